package nats

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"

	natsgo "github.com/nats-io/nats.go"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/internal/brokerwire"
)

// A record whose JSON does not fit in a message the server accepts
// (max_payload, 1 MiB by default, while JSON escapes can make an event of
// a large publish body larger still) is stored gzipped, marked by this
// header: still readable with common tools, and rare enough that the log
// stays JSON for operators otherwise.
const (
	encodingHeader = "Content-Encoding"
	gzipEncoding   = "gzip"
)

// headerRoom is what a message's headers may take beside its payload.
const headerRoom = 512

// maxDecoded bounds what a gzipped message may expand to: anyone with
// access to the server can write to the stream.
const maxDecoded = 64 << 20

// encode sets m's payload to r, compressed if it would not fit in
// maxPayload, and fails with an error wrapping [herald.ErrInvalidEvent]
// if it still does not: no retry can append it.
func encode(m *natsgo.Msg, r *herald.Record, maxPayload int64) error {
	m.Data = brokerwire.Encode(r)
	if int64(len(m.Data)+headerRoom) <= maxPayload {
		return nil
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed) // a valid level: no error
	zw.Write(m.Data)
	zw.Close()
	if size := int64(buf.Len() + headerRoom); size > maxPayload {
		return fmt.Errorf("%w: nats: a record of %d bytes as JSON, %d compressed, exceeds the server's max_payload of %d", herald.ErrInvalidEvent, len(m.Data), buf.Len(), maxPayload)
	}
	m.Data = buf.Bytes()
	m.Header.Set(encodingHeader, gzipEncoding)
	return nil
}

// decode reads a record from a message's payload and headers.
func decode(data []byte, h natsgo.Header) (herald.Record, error) {
	switch enc := h.Get(encodingHeader); enc {
	case "":
	case gzipEncoding:
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return herald.Record{}, fmt.Errorf("%w: %v", brokerwire.ErrMalformed, err)
		}
		data, err = io.ReadAll(io.LimitReader(zr, maxDecoded+1))
		if err == nil && len(data) > maxDecoded {
			err = errors.New("expands beyond the limit")
		}
		if err != nil {
			return herald.Record{}, fmt.Errorf("%w: gzip: %v", brokerwire.ErrMalformed, err)
		}
	default:
		return herald.Record{}, fmt.Errorf("%w: %s %q", brokerwire.ErrMalformed, encodingHeader, enc)
	}
	return brokerwire.Decode(data)
}
