package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// runVersion prints what this binary was built from: the module version
// and, when built inside a git checkout, the commit.
func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		return usageError(stderr, "herald version takes no arguments")
	}
	bi, _ := debug.ReadBuildInfo()
	_, err := fmt.Fprintln(stdout, versionLine(bi))
	return err
}

// versionLine describes a build in one line, for example
// "herald v1.2.0 (github.com/herald-sse/herald, revision 0f3c…, 2025-01-31T10:00:00Z) go1.26.0 linux/amd64".
// Go sets the module version for `go install …@version`, and for builds
// in a checkout a pseudo-version with the revision; the vcs.* settings
// exist only when the build stamped them (not with -buildvcs=false).
func versionLine(bi *debug.BuildInfo) string {
	version, module := "(unknown)", "github.com/herald-sse/herald"
	var details []string
	if bi != nil {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		if bi.Main.Path != "" {
			module = bi.Main.Path
		}
		details = append(details, module)
		settings := map[string]string{}
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
		if rev := settings["vcs.revision"]; rev != "" {
			details = append(details, "revision "+rev)
			if t := settings["vcs.time"]; t != "" {
				details = append(details, t)
			}
			if settings["vcs.modified"] == "true" {
				details = append(details, "modified")
			}
		}
	} else {
		details = append(details, module, "no build information")
	}
	return fmt.Sprintf("herald %s (%s) %s %s/%s", version, strings.Join(details, ", "), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
