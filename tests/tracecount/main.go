// Command tracecount counts Go preemptions by path in a runtime/trace file,
// as an independent ground truth for goprobe's integration tests.
//
//	tracecount -go /tmp/gos/1.27.3/go/bin/go [-start-ns N -end-ns N] TRACE
//
// It runs `GO tool trace -d=parsed TRACE` (Go 1.24+; use 1.27.3, which reads
// every trace format from Go 1.21 to 1.27), parses its text and prints one
// JSON object on stdout. See README.md.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tracecount", flag.ContinueOnError)
	fs.SetOutput(stderr)
	goBin := fs.String("go", "go", "`go` command whose `go tool trace -d=parsed` decodes the trace (Go 1.24+, as new as the trace; use /tmp/gos/1.27.3/go/bin/go)")
	parsedPath := fs.String("parsed", "", "read `go tool trace -d=parsed` output from `file` (\"-\": stdin) instead of running it")
	format := fs.Int("format", 0, "trace format (21, 22, 23, 25, 26) when no TRACE file is given with -parsed")
	startNS := fs.Int64("start-ns", 0, "CLOCK_MONOTONIC `ns` read right after runtime/trace.Start returned (a fixture's start_ns): window start, and clock anchor for Go 1.21/1.22 traces")
	endNS := fs.Int64("end-ns", 0, "CLOCK_MONOTONIC `ns` read right before runtime/trace.Stop (a fixture's end_ns): window end")
	nframes := fs.Int("frames", 8, "stack frames kept per event (-1: all)")
	noEvents := fs.Bool("no-events", false, "omit the events list")
	pretty := fs.Bool("pretty", false, "indent the JSON")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: tracecount [flags] TRACE\n       tracecount -parsed FILE [-format N | TRACE] [flags]\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 1 || (fs.NArg() == 0 && *parsedPath == "") {
		fs.Usage()
		return 2
	}
	tracePath := fs.Arg(0)

	fmtVer := *format
	if tracePath != "" {
		v, err := readHeader(tracePath)
		if err != nil {
			fmt.Fprintf(stderr, "tracecount: %v\n", err)
			return 1
		}
		fmtVer = v
	}

	an := NewAnalyzer(fmtVer, *nframes)
	var pinfo ParserInfo
	var stats ParseStats
	var perr error
	if *parsedPath != "" {
		pinfo.Command = "read from " + *parsedPath
		var r io.Reader = os.Stdin
		if *parsedPath != "-" {
			f, err := os.Open(*parsedPath)
			if err != nil {
				fmt.Fprintf(stderr, "tracecount: %v\n", err)
				return 1
			}
			defer f.Close()
			r = f
		}
		stats, perr = Parse(r, an.Event)
	} else {
		pinfo, stats, perr = runGoToolTrace(*goBin, tracePath, an.Event)
	}

	res := an.Finish(*startNS, *endNS)
	res.TraceFile = tracePath
	res.Parser = pinfo
	res.Parse = stats
	if *noEvents {
		res.Events = nil
	}
	if stats.Unparsed > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%d line(s) of parser output not understood, first: %s", stats.Unparsed, stats.FirstBadLine))
	}
	code := 0
	if perr != nil {
		res.Error = perr.Error()
		fmt.Fprintf(stderr, "tracecount: %v\n", perr)
		code = 1
	}
	var out []byte
	var err error
	if *pretty {
		out, err = json.MarshalIndent(res, "", "  ")
	} else {
		out, err = json.Marshal(res)
	}
	if err != nil {
		fmt.Fprintf(stderr, "tracecount: %v\n", err)
		return 1
	}
	stdout.Write(append(out, '\n'))
	return code
}

// readHeader returns N from the "go 1.N trace\x00\x00\x00" header.
func readHeader(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 16)
	n, _ := io.ReadFull(f, buf)
	var v int
	if _, err := fmt.Sscanf(string(buf[:n]), "go 1.%d trace", &v); err != nil {
		return 0, fmt.Errorf("%s: not a Go execution trace (header %q)", path, buf[:n])
	}
	return v, nil
}

// childEnv is the environment for the go command: the local toolchain
// only, and a build cache (go tool trace is built on first use in 1.24+
// distributions that do not ship it prebuilt).
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k := kv
		if i := strings.IndexByte(kv, '='); i >= 0 {
			k = kv[:i]
		}
		switch k {
		case "GOROOT", "GOTOOLCHAIN", "GOFLAGS", "GOOS", "GOARCH", "GOEXPERIMENT":
			// GOROOT from another toolchain would make `go tool` run that
			// toolchain's trace; drop it so the go binary uses its own.
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "GOTOOLCHAIN=local")
	if os.Getenv("GOCACHE") == "" {
		env = append(env, "GOCACHE=/tmp/tracecount-cache/gocache")
	}
	if os.Getenv("GOPATH") == "" {
		env = append(env, "GOPATH=/tmp/tracecount-cache/gopath")
	}
	return env
}

func runGoToolTrace(goBin, tracePath string, fn func(*Event)) (ParserInfo, ParseStats, error) {
	info := ParserInfo{Command: goBin + " tool trace -d=parsed " + tracePath}
	env := childEnv()
	vcmd := exec.Command(goBin, "env", "GOVERSION")
	vcmd.Env = env
	if out, err := vcmd.Output(); err == nil {
		info.GoVersion = strings.TrimSpace(string(out))
	}
	cmd := exec.Command(goBin, "tool", "trace", "-d=parsed", tracePath)
	cmd.Env = env
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return info, ParseStats{}, err
	}
	if err := cmd.Start(); err != nil {
		return info, ParseStats{}, fmt.Errorf("%s: %v", goBin, err)
	}
	stats, perr := Parse(pipe, fn)
	if perr != nil {
		io.Copy(io.Discard, pipe)
	}
	werr := cmd.Wait()
	if werr != nil {
		msg := strings.TrimSpace(errBuf.String())
		hint := ""
		if strings.Contains(msg, "invalid value") || strings.Contains(msg, "invalid debug mode") ||
			strings.Contains(msg, "unsupported trace version") {
			hint = " (need a Go 1.24+ toolchain at least as new as the trace; use /tmp/gos/1.27.3/go/bin/go)"
		}
		var ee *exec.ExitError
		if errors.As(werr, &ee) {
			return info, stats, fmt.Errorf("%s failed: %v: %s%s", info.Command, werr, msg, hint)
		}
		return info, stats, fmt.Errorf("%s: %v%s", info.Command, werr, hint)
	}
	if perr != nil {
		return info, stats, perr
	}
	if stats.Events == 0 {
		return info, stats, fmt.Errorf("%s printed no events (stderr: %s)", info.Command, strings.TrimSpace(errBuf.String()))
	}
	return info, stats, nil
}
