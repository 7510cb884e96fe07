package herald

import (
	"strconv"
	"strings"
)

// generatedID is an ID the hub makes for an event its publisher did not
// name: the history's epoch, '-', and the event's position in base 36.
// The epoch says which history issued it (a wiped or replaced store has
// another), the position where resuming after it starts. Every generated
// ID is made and read by this type, so that the shape publishers may not
// use (see [Event.Validate]) and the one resuming understands are one.
type generatedID struct {
	epoch string
	pos   uint64
}

// String returns the ID as it goes on the wire.
func (id generatedID) String() string {
	return id.epoch + "-" + strconv.FormatUint(id.pos, 36)
}

// splitGeneratedID returns the epoch and position parts of s if it has
// the shape of a generated ID: an epoch-shaped name (see [NewEpoch]),
// '-', and lowercase base-36 digits. The digits may not fit in a
// position: such an ID still has the shape, so no publisher may use it.
func splitGeneratedID(s string) (epoch, digits string, ok bool) {
	i := strings.LastIndexByte(s, '-')
	if i < 0 || !looksLikeEpoch(s[:i]) || i+1 == len(s) {
		return "", "", false
	}
	for _, c := range []byte(s[i+1:]) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z') {
			return "", "", false
		}
	}
	return s[:i], s[i+1:], true
}

// hasGeneratedShape reports whether s could be an ID the hub made.
func hasGeneratedShape(s string) bool {
	_, _, ok := splitGeneratedID(s)
	return ok
}

// parseGeneratedID reads an ID the hub made. It fails for anything that
// does not have the shape or whose position does not fit.
func parseGeneratedID(s string) (generatedID, bool) {
	epoch, digits, ok := splitGeneratedID(s)
	if !ok {
		return generatedID{}, false
	}
	pos, err := strconv.ParseUint(digits, 36, 64)
	if err != nil {
		return generatedID{}, false
	}
	return generatedID{epoch: epoch, pos: pos}, true
}

// looksLikeEpoch reports whether s could be a history's epoch (see
// [NewEpoch]), so that an ID made of it is another history's rather than
// one nobody issued.
func looksLikeEpoch(s string) bool {
	if len(s) != epochLength {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
