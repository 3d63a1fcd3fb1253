package cli

import (
	"github.com/alecthomas/kong"
)

// Options are the kong options of ronly's grammar: its name, the text of
// its help and the variables its tags use.
func Options(version string) []kong.Option {
	return []kong.Option{
		kong.Name("ronly"),
		kong.Description(description),
		kong.Vars{"version": "ronly " + version, "default_tmpfs_size": defaultTmpfsSize},
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, NoExpandSubcommands: true}),
	}
}

const defaultTmpfsSize = "64M"

// Defaults is the CLI kong makes of a command line without flags (the
// default tags of CLI's fields), for a session started without kong's
// model: go/cmd/ronly's flagless, which TestDefaultsAreKongs keeps honest.
func Defaults() CLI {
	return CLI{
		TmpfsSize:      defaultTmpfsSize,
		LandlockMinABI: 1,
		Profile:        "debug",
		MetricsSocket:  "/run/ronly/exporter.sock",
		MetricsSpool:   "/var/lib/ronly/spool",
	}
}

// Parse parses args (the command line without argv[0]) with parser, built
// on a struct that embeds CLI: the --policy file's flags first, then args,
// in one pass of kong's grammar. The file is returned for Attribute. The
// error is one line, naming the file's line for a flag the file set.
func Parse(parser *kong.Kong, args []string) (*kong.Context, *PolicyFile, error) {
	args, pf, err := withPolicyFile(parser, args)
	if err != nil {
		return nil, pf, err
	}
	ctx, err := parser.Parse(explicitRun(parser.Model, args))
	if err == nil {
		err = pf.afterParse()
	}
	if err != nil {
		return nil, pf, pf.Attribute(err)
	}
	return ctx, pf, nil
}

// Attribute is err, naming the policy file's line and key instead of the
// flag when the file set the flag it is about (see attribute).
func (pf *PolicyFile) Attribute(err error) error {
	if err == nil {
		return nil
	}
	msg := pf.attribute(err.Error())
	if msg == err.Error() {
		return err
	}
	return &attributedError{msg: msg, err: err}
}

type attributedError struct {
	msg string
	err error
}

func (e *attributedError) Error() string { return e.msg }
func (e *attributedError) Unwrap() error { return e.err }

// explicitRun makes `ronly -- probe` run a program called probe rather than
// the probe subcommand: a "--" before any subcommand name selects run. The
// "run" goes right before the "--", so flags ahead of it are still parsed
// (and a misspelt one is still an error, not a command). A "--" after the
// command (the first word that is neither a flag nor a flag's value, as
// scanGlobalFlags reads them) is the command's own, left where it is.
func explicitRun(app *kong.Application, args []string) []string {
	// Parse reports the scan's errors, from withPolicyFile's scan.
	sc, err := scanGlobalFlags(app, args)
	if err != nil || sc.dashes < 0 || sc.named {
		return args
	}
	i := sc.dashes
	return append(append(append([]string{}, args[:i]...), "run"), args[i:]...)
}
