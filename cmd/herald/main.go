// Command herald runs and talks to a Herald Server-Sent Events hub.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{"serve", "run the hub (in memory by default)", runServe},
	{"bench", "load-test any Server-Sent Events endpoint", runBench},
	{"token", "print a development token (an HS256 JWT)", runToken},
	{"version", "print the version and revision this binary was built from", runVersion},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal now kills at once, mid-shutdown
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" {
		args = append([]string{"version"}, args[1:]...)
	}
	for _, c := range commands {
		if c.name == args[0] {
			err := c.run(ctx, args[1:], stdout, stderr)
			switch {
			case err == nil:
				return 0
			case errors.Is(err, flag.ErrHelp):
				return 0
			case errors.Is(err, errUsage):
				return 2
			}
			fmt.Fprintf(stderr, "herald %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "herald: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Herald is a Server-Sent Events hub.")
	fmt.Fprintln(w, "\nUsage:\n  herald <command> [flags]\n\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'herald <command> --help' for a command's flags. Every flag can also be")
	fmt.Fprintln(w, "set by an environment variable: --max-connections is HERALD_MAX_CONNECTIONS.")
}

// errUsage reports bad flags, already explained to the user.
var errUsage = errors.New("usage")

// usageError explains a bad flag value on stderr and returns errUsage, so
// every flag problem exits with status 2.
func usageError(stderr io.Writer, format string, args ...any) error {
	fmt.Fprintf(stderr, format+"\n", args...)
	return errUsage
}

// envName is the environment variable that sets flag name.
func envName(flagName string) string {
	return "HERALD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags applies HERALD_* environment variables and then args to fs, so
// that a flag on the command line wins over the environment.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			// Asked-for help is output, not an error: print it to stdout.
			fs.SetOutput(stdout)
			fs.Usage()
			return flag.ErrHelp
		}
		if a == "--" {
			break
		}
	}
	fs.SetOutput(stderr)
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(envName(f.Name)); ok && envErr == nil {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("invalid value %q for %s: %v", v, envName(f.Name), err)
			}
		}
	})
	if envErr != nil {
		return usageError(stderr, "%v", envErr)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "unexpected arguments: %q", fs.Args())
	}
	return nil
}

// flagUsage prints a command's flags with their environment variables.
func flagUsage(fs *flag.FlagSet, synopsis string) func() {
	return func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: herald %s [flags]\n\n%s\n\nFlags:\n", fs.Name(), synopsis)
		fs.VisitAll(func(f *flag.Flag) {
			if _, gone := f.Value.(*removedFlag); gone {
				return
			}
			typ, help := flag.UnquoteUsage(f)
			fmt.Fprintf(w, "  --%s %s\n      %s (env %s", f.Name, typ, help, envName(f.Name))
			if f.DefValue != "" {
				fmt.Fprintf(w, ", default %s", f.DefValue)
			}
			fmt.Fprintln(w, ")")
		})
	}
}
