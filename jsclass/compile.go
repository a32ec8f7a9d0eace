// Package jsclass runs classes written in JavaScript or TypeScript with the
// Durable Objects API, deployed at run time (docs/javascript.md).
//
// A deploy compiles the module with esbuild (TypeScript types stripped, ES
// modules bundled into one script), loads it once in a scratch engine to
// find the exported class, and stores the script as the next version of
// the class in the log's class store (log.Classes), which every node
// watches. A node serves a deployed class through objects.DefineDynamic:
// each activation owns one goja runtime holding one instance of the class;
// before each turn the activation checks the class's newest version and,
// if it changed, starts over with the new code (the in-memory state goes,
// storage stays), so the next turn after a deploy runs the new version.
package jsclass

import (
	"fmt"
	"path"
	"strings"

	"github.com/evanw/esbuild/pkg/api"
	"github.com/strata-objects/strata/objects"
)

// ErrCompile is a deploy refused because the code does not compile or load;
// the message is the compiler's or the engine's.
var ErrCompile = fmt.Errorf("%w: class code refused", objects.ErrBadInput)

// exportsGlobal is the global that holds the module's exports once the
// compiled script has run.
const exportsGlobal = "__strata_exports"

// Compile turns a module's source (filename says its loader: .ts, .mts,
// .tsx, else JavaScript) into one script for the engine.
func Compile(filename string, source []byte) (string, error) {
	loader := api.LoaderJS
	switch strings.ToLower(path.Ext(filename)) {
	case ".ts", ".mts", ".cts":
		loader = api.LoaderTS
	}
	res := api.Build(api.BuildOptions{
		Stdin: &api.StdinOptions{
			Contents:   string(source),
			Sourcefile: path.Base(filename),
			Loader:     loader,
		},
		Bundle:     true,
		Write:      false,
		Format:     api.FormatIIFE,
		GlobalName: exportsGlobal,
		Target:     api.ES2017,
		Platform:   api.PlatformNeutral,
		External:   []string{"strata", "cloudflare:workers"},
		LogLevel:   api.LogLevelSilent,
		Charset:    api.CharsetUTF8,
	})
	if len(res.Errors) > 0 {
		msgs := make([]string, 0, len(res.Errors))
		for _, m := range res.Errors {
			msgs = append(msgs, formatMessage(m))
		}
		return "", fmt.Errorf("%w: %s", ErrCompile, strings.Join(msgs, "; "))
	}
	if len(res.OutputFiles) != 1 {
		return "", fmt.Errorf("%w: compiler produced %d files", ErrCompile, len(res.OutputFiles))
	}
	return string(res.OutputFiles[0].Contents), nil
}

func formatMessage(m api.Message) string {
	if m.Location == nil {
		return m.Text
	}
	return fmt.Sprintf("%s:%d:%d: %s", m.Location.File, m.Location.Line, m.Location.Column+1, m.Text)
}

// webGlobals are the Web API globals the prelude can define.
var webGlobals = []string{
	"Headers", "Request", "Response", "URL", "URLSearchParams", "TextEncoder", "TextDecoder",
	"WebSocketPair", "WebSocketRequestResponsePair", "console", "crypto", "structuredClone",
}

// globalNames lists the Web API globals script mentions: only those are
// defined in its runtimes (each costs the activation a little). A name
// counts wherever it appears, in code, a string or a comment, so code that
// names a global finds it; code that builds the name at run time does not.
func globalNames(script string) []string {
	var out []string
	for _, n := range webGlobals {
		if strings.Contains(script, n) {
			out = append(out, n)
		}
	}
	return out
}
