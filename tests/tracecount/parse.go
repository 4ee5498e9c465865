package main

// Parser for the text that `go tool trace -d=parsed TRACE` prints (Go 1.24+
// toolchains; the format is internal/trace's Event.String()):
//
//	M=25391 P=0 G=8 StateTransition Time=3215314495744 GoID=8 Running->Runnable Reason="preempted"
//	TransitionStack=
//		runtime.asyncPreempt2 @ 0x449673
//			/go/src/runtime/preempt.go:320
//		...
//	<blank>
//	Stack=
//		...
//	<blank>
//
// Every event starts with a header line "M=.. P=.. G=.. KIND Time=.."; the
// kind-specific fields follow on the same line (strings are %q-quoted, so
// they never contain a raw newline). Stacks follow on their own lines: a
// "TransitionStack=" or "Stack=" marker, then two lines per frame
// ("\tFUNC @ 0xPC" and "\t\tFILE:LINE"), then a blank line.

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Frame is one stack frame as printed by the parser.
type Frame struct {
	Func string `json:"func"`
	PC   uint64 `json:"pc"`
	File string `json:"file"`
	Line int    `json:"line"`
}

// Event is one parsed event. Only the fields this tool needs are decoded;
// Rest keeps the undecoded remainder of the header line.
type Event struct {
	Line int // 1-based line number of the header line in the text
	M    int64
	P    int64
	G    int64 // goroutine context of the event (the emitter), -1 if none
	Kind string
	Time int64
	Rest string

	// StateTransition
	Resource string // "goroutine" or "proc"
	ID       int64  // GoID or ProcID
	From, To string
	Reason   string

	TransitionStack []Frame
	Stack           []Frame

	// Label
	Label         string
	LabelResource string

	// RangeBegin / RangeActive / RangeEnd
	RangeName  string
	RangeScope string

	// Sync
	SyncN       int64
	HasSnapshot bool
	SnapTrace   int64
	SnapMono    int64
}

var (
	headerRE = regexp.MustCompile(`^M=(-?\d+) P=(-?\d+) G=(-?\d+) (\S+) Time=(-?\d+)(.*)$`)
	// Go 1.26+ toolchains: " GoID=8 NotExist->Runnable Reason="..."".
	transRE = regexp.MustCompile(`^ (GoID|ProcID)=(-?\d+) (\w+)->(\w+) Reason=(".*")$`)
	// Go 1.24/1.25 toolchains: " Resource=Goroutine(8) Reason="..." GoID=8 NotExist->Runnable".
	transOldRE = regexp.MustCompile(`^ Resource=\S+ Reason=(".*") (GoID|ProcID)=(-?\d+) (\w+)->(\w+)$`)
	syncRE     = regexp.MustCompile(`^ N=(\d+)(?: Trace=(-?\d+) Mono=(-?\d+) Wall=\S*)?`)
	frameRE    = regexp.MustCompile(`^\t([^\t].*|) @ 0x([0-9a-fA-F]+)$`)
	fileRE     = regexp.MustCompile(`^\t\t(.*):(\d+)$`)
)

// ParseStats reports what the parser saw.
type ParseStats struct {
	Lines        int    `json:"lines"`
	Events       int    `json:"events"`
	Unparsed     int    `json:"unparsed_lines"`
	FirstBadLine string `json:"first_unparsed_line,omitempty"`
}

// Parse reads `go tool trace -d=parsed` text from r and calls fn for every
// event, in order. fn receives each event once it is complete (after its
// stacks).
func Parse(r io.Reader, fn func(*Event)) (ParseStats, error) {
	var st ParseStats
	br := bufio.NewReaderSize(r, 1<<20)
	var cur *Event
	var stk *[]Frame // stack being filled, nil outside a stack
	flush := func() {
		if cur != nil {
			fn(cur)
			st.Events++
		}
		cur, stk = nil, nil
	}
	bad := func(line string) {
		st.Unparsed++
		if st.FirstBadLine == "" {
			st.FirstBadLine = fmt.Sprintf("%d: %.200s", st.Lines, line)
		}
	}
	for {
		line, err := br.ReadString('\n')
		if len(line) == 0 && err != nil {
			if err == io.EOF {
				break
			}
			return st, err
		}
		st.Lines++
		line = strings.TrimRight(line, "\r\n")
		switch {
		case strings.HasPrefix(line, "M="):
			flush()
			ev, perr := parseHeader(line)
			if perr != nil {
				bad(line)
				continue
			}
			ev.Line = st.Lines
			cur = ev
		case line == "":
			stk = nil
		case line == "TransitionStack=":
			if cur == nil {
				bad(line)
				continue
			}
			stk = &cur.TransitionStack
		case line == "Stack=":
			if cur == nil {
				bad(line)
				continue
			}
			stk = &cur.Stack
		case strings.HasPrefix(line, "\t\t"):
			m := fileRE.FindStringSubmatch(line)
			if m == nil || stk == nil || len(*stk) == 0 {
				bad(line)
				continue
			}
			f := &(*stk)[len(*stk)-1]
			f.File = m[1]
			f.Line, _ = strconv.Atoi(m[2])
		case strings.HasPrefix(line, "\t"):
			m := frameRE.FindStringSubmatch(line)
			if m == nil || stk == nil {
				bad(line)
				continue
			}
			pc, _ := strconv.ParseUint(m[2], 16, 64)
			*stk = append(*stk, Frame{Func: m[1], PC: pc})
		default:
			bad(line)
		}
		if err == io.EOF {
			break
		}
	}
	flush()
	return st, nil
}

func parseHeader(line string) (*Event, error) {
	m := headerRE.FindStringSubmatch(line)
	if m == nil {
		return nil, fmt.Errorf("not an event header")
	}
	ev := &Event{Kind: m[4], Rest: m[6]}
	ev.M, _ = strconv.ParseInt(m[1], 10, 64)
	ev.P, _ = strconv.ParseInt(m[2], 10, 64)
	ev.G, _ = strconv.ParseInt(m[3], 10, 64)
	ev.Time, _ = strconv.ParseInt(m[5], 10, 64)
	rest := m[6]
	switch ev.Kind {
	case "StateTransition":
		var kind, id, from, to, quoted string
		if t := transRE.FindStringSubmatch(rest); t != nil {
			kind, id, from, to, quoted = t[1], t[2], t[3], t[4], t[5]
		} else if t := transOldRE.FindStringSubmatch(rest); t != nil {
			quoted, kind, id, from, to = t[1], t[2], t[3], t[4], t[5]
		} else {
			return nil, fmt.Errorf("bad StateTransition")
		}
		ev.Resource = "goroutine"
		if kind == "ProcID" {
			ev.Resource = "proc"
		}
		ev.ID, _ = strconv.ParseInt(id, 10, 64)
		ev.From, ev.To = from, to
		reason, err := strconv.Unquote(quoted)
		if err != nil {
			return nil, fmt.Errorf("bad reason %s", quoted)
		}
		ev.Reason = reason
	case "Label":
		// " Label=%q Resource=%s"
		if s, ok := cutPrefix(rest, " Label="); ok {
			if q, err := strconv.QuotedPrefix(s); err == nil {
				ev.Label, _ = strconv.Unquote(q)
				ev.LabelResource = strings.TrimPrefix(s[len(q):], " Resource=")
			}
		}
	case "RangeBegin", "RangeActive", "RangeEnd":
		// " Name=%q Scope=%s[ Attributes=[...]]"
		if s, ok := cutPrefix(rest, " Name="); ok {
			if q, err := strconv.QuotedPrefix(s); err == nil {
				ev.RangeName, _ = strconv.Unquote(q)
				sc := strings.TrimPrefix(s[len(q):], " Scope=")
				if i := strings.Index(sc, " "); i >= 0 {
					sc = sc[:i]
				}
				ev.RangeScope = sc
			}
		}
	case "Sync":
		if t := syncRE.FindStringSubmatch(rest); t != nil {
			ev.SyncN, _ = strconv.ParseInt(t[1], 10, 64)
			if t[2] != "" {
				ev.HasSnapshot = true
				ev.SnapTrace, _ = strconv.ParseInt(t[2], 10, 64)
				ev.SnapMono, _ = strconv.ParseInt(t[3], 10, 64)
			}
		}
	}
	return ev, nil
}

// cutPrefix is strings.CutPrefix (Go 1.20+), kept local for clarity.
func cutPrefix(s, prefix string) (string, bool) {
	if strings.HasPrefix(s, prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// goroutineOfResource parses "Goroutine(19)" and returns 19, or -1.
func goroutineOfResource(s string) int64 {
	if v, ok := cutPrefix(s, "Goroutine("); ok && strings.HasSuffix(v, ")") {
		n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
		if err == nil {
			return n
		}
	}
	return -1
}
