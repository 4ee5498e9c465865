package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Kinds of counted transitions (Record.Kind).
const (
	KindAsyncReschedule      = "async_reschedule"        // asyncPreempt2 -> gopreempt_m -> goschedImpl(gp, true)
	KindAsyncPark            = "async_park"              // asyncPreempt2 -> preemptPark
	KindStackCheckReschedule = "stack_check_reschedule"  // morestack -> newstack -> gopreempt_m -> goschedImpl(gp, true)
	KindStackCheckPark       = "stack_check_park"        // morestack -> newstack -> preemptPark
	KindParkUnknownPath      = "park_unknown_path"       // preemptPark, trace has no stack to tell the path
	KindGosched              = "gosched"                 // gosched_m / goschedguarded_m -> goschedImpl(gp, false)
	KindGoschedNotImpl       = "gosched_not_goschedimpl" // GoSched event written outside goschedImpl (procresize, 1.21 StopTrace, debugCall)
	KindYield                = "yield"                   // goyield_m (sync handoff): GoPreempt event, not goschedImpl
)

// Record is one counted transition.
type Record struct {
	Kind     string `json:"kind"`
	Path     string `json:"path"`    // async | stack_check | unknown | "" (gosched, yield)
	Outcome  string `json:"outcome"` // reschedule | park | gosched | yield
	Ts       int64  `json:"ts"`      // trace time, ns (internal/trace Time)
	Mono     *int64 `json:"mono_ns"` // CLOCK_MONOTONIC ns, null if not mappable
	InWindow *bool  `json:"in_window,omitempty"`
	GoID     int64  `json:"goid"`
	M        int64  `json:"m"`
	P        int64  `json:"p"`
	Reason   string `json:"reason"`
	Where    *Frame `json:"where"` // interrupted user frame (async) / frame whose prologue checked (stack-check, 1.25+)
	// InterruptedPC is the PC async preemption interrupted: where.pc + 1
	// (the parser reports non-leaf frames at return address - 1, and the
	// frame under asyncPreempt "returns" to the interrupted instruction).
	// where.line is the line of where.pc, which can be the previous
	// instruction's line.
	InterruptedPC *uint64 `json:"interrupted_pc,omitempty"`
	Frames        []Frame `json:"frames"`
	Waker         *Waker  `json:"waker,omitempty"`
	Line          int     `json:"line"` // line of the event in the -d=parsed text

	stackless bool // v1 Running->Waiting without stack: preemptPark or GC worker park
}

// Waker is the event that made a parked goroutine runnable again (resumeG
// after suspendG: the GC's stack scan, or the tracer's status sweep).
type Waker struct {
	Ts     int64   `json:"ts"`
	Mono   *int64  `json:"mono_ns"`
	GoID   int64   `json:"goid"`
	Cause  string  `json:"cause"` // gc | trace | unknown
	Label  string  `json:"label,omitempty"`
	Frames []Frame `json:"frames"`
}

// Counts of transitions by kind.
type Counts struct {
	AsyncReschedule      int `json:"async_reschedule"`
	AsyncPark            int `json:"async_park"`
	StackCheckReschedule int `json:"stack_check_reschedule"`
	StackCheckPark       int `json:"stack_check_park"`
	ParkUnknownPath      int `json:"park_unknown_path"`
	Gosched              int `json:"gosched"`
	GoschedNotImpl       int `json:"gosched_not_goschedimpl"`
	Yield                int `json:"yield"`

	// Derived totals.
	PreemptReschedule int            `json:"preempt_reschedule"` // async_reschedule + stack_check_reschedule = goschedImpl(gp, true)
	PreemptPark       int            `json:"preempt_park"`       // every preemptPark
	AsyncTotal        int            `json:"async_total"`        // async_reschedule + async_park
	StackCheckTotal   int            `json:"stack_check_total"`  // stack_check_reschedule + stack_check_park
	ParkByCause       map[string]int `json:"park_by_cause"`      // who resumed the parked goroutine: gc | trace | unknown
}

func newCounts() *Counts { return &Counts{ParkByCause: map[string]int{}} }

func (c *Counts) add(r *Record) {
	switch r.Kind {
	case KindAsyncReschedule:
		c.AsyncReschedule++
	case KindAsyncPark:
		c.AsyncPark++
	case KindStackCheckReschedule:
		c.StackCheckReschedule++
	case KindStackCheckPark:
		c.StackCheckPark++
	case KindParkUnknownPath:
		c.ParkUnknownPath++
	case KindGosched:
		c.Gosched++
	case KindGoschedNotImpl:
		c.GoschedNotImpl++
	case KindYield:
		c.Yield++
	}
	if r.Outcome == "park" {
		cause := "unknown"
		if r.Waker != nil {
			cause = r.Waker.Cause
		}
		c.ParkByCause[cause]++
	}
	c.PreemptReschedule = c.AsyncReschedule + c.StackCheckReschedule
	c.PreemptPark = c.AsyncPark + c.StackCheckPark + c.ParkUnknownPath
	c.AsyncTotal = c.AsyncReschedule + c.AsyncPark
	c.StackCheckTotal = c.StackCheckReschedule + c.StackCheckPark
}

// Analyzer consumes parsed events in order and classifies them.
type Analyzer struct {
	Format  int // trace format from the file header: 21, 22, 23, 25, 26; 0 unknown
	NFrames int // frames kept per record

	v1Detected bool

	records     []*Record
	pendingPark map[int64]*Record // goid -> park waiting for its waker
	gcWorker    map[int64]bool    // goroutines known to be gcBgMarkWorker
	runLabel    map[int64]string  // label of the goroutine's current run (v1 GoStartLabel)
	assist      map[int64]int     // goroutine -> open "GC mark assist" ranges

	firstTs, lastTs int64
	haveTs          bool
	traceStartTs    int64 // last event whose stack has runtime/trace.Start
	haveTraceStart  bool
	traceStopTs     int64 // first event whose stack has runtime/trace.Stop
	haveTraceStop   bool
	snapshots       int
	snapMaxAbsDiff  int64
	snapFirstDiff   int64
	firstSyncTime   int64
	haveFirstSync   bool
	transitions     map[string]int
}

// NewAnalyzer returns an analyzer for a trace of the given header format.
func NewAnalyzer(format, nframes int) *Analyzer {
	return &Analyzer{
		Format:      format,
		NFrames:     nframes,
		pendingPark: map[int64]*Record{},
		gcWorker:    map[int64]bool{},
		runLabel:    map[int64]string{},
		assist:      map[int64]int{},
		transitions: map[string]int{},
	}
}

// IsV1 reports whether the trace is in the Go 1.11–1.21 format (converted
// by the parser), where preemptPark and GC-worker parks carry no stack and
// no reason.
func (a *Analyzer) IsV1() bool {
	if a.Format != 0 {
		return a.Format <= 21
	}
	return a.v1Detected
}

func hasFrame(st []Frame, fn string) bool {
	for _, f := range st {
		if f.Func == fn {
			return true
		}
	}
	return false
}

func (a *Analyzer) top(st []Frame) []Frame {
	n := len(st)
	if a.NFrames >= 0 && n > a.NFrames {
		n = a.NFrames
	}
	out := make([]Frame, n)
	copy(out, st[:n])
	return out
}

// Event processes one event.
func (a *Analyzer) Event(ev *Event) {
	if ev.Kind == "Sync" {
		if !a.haveFirstSync {
			a.haveFirstSync = true
			a.firstSyncTime = ev.Time
			if ev.Time < 0 {
				// The v1 converter starts with a Sync at Time=-1.
				a.v1Detected = true
			}
		}
		if ev.HasSnapshot {
			d := ev.SnapMono - ev.SnapTrace
			if a.snapshots == 0 {
				a.snapFirstDiff = d
			}
			a.snapshots++
			if d < 0 {
				d = -d
			}
			if d > a.snapMaxAbsDiff {
				a.snapMaxAbsDiff = d
			}
		}
	}
	if ev.Time >= 0 {
		if !a.haveTs || ev.Time < a.firstTs {
			a.firstTs = ev.Time
		}
		if !a.haveTs || ev.Time > a.lastTs {
			a.lastTs = ev.Time
		}
		a.haveTs = true
	}
	if hasFrame(ev.Stack, "runtime/trace.Start") {
		if !a.haveTraceStart || ev.Time > a.traceStartTs {
			a.traceStartTs = ev.Time
		}
		a.haveTraceStart = true
	}
	if hasFrame(ev.Stack, "runtime/trace.Stop") {
		if !a.haveTraceStop || ev.Time < a.traceStopTs {
			a.traceStopTs = ev.Time
		}
		a.haveTraceStop = true
	}

	switch ev.Kind {
	case "Label":
		if g := goroutineOfResource(ev.LabelResource); g >= 0 {
			a.runLabel[g] = ev.Label
			if strings.HasPrefix(ev.Label, "GC ") {
				a.gcWorker[g] = true
			}
		}
		return
	case "RangeBegin", "RangeEnd":
		if ev.RangeName == "GC mark assist" {
			if g := goroutineOfResource(ev.RangeScope); g >= 0 {
				if ev.Kind == "RangeBegin" {
					a.assist[g]++
				} else if a.assist[g] > 0 {
					a.assist[g]--
				}
			}
		}
		return
	case "StateTransition":
	default:
		return
	}
	if ev.Resource != "goroutine" {
		return
	}
	g := ev.ID
	if ev.From == "NotExist" && len(ev.TransitionStack) > 0 && ev.TransitionStack[0].Func == "runtime.gcBgMarkWorker" {
		a.gcWorker[g] = true
	}
	if ev.To == "Running" && ev.From != "Running" {
		delete(a.runLabel, g) // a new run; v1 GoStartLabel sends its Label right after
	}
	if ev.From == "Running" && ev.To != "Running" {
		a.transitions[fmt.Sprintf("%s->%s %q", ev.From, ev.To, ev.Reason)]++
	}
	if ev.From == "Waiting" && ev.To != "Waiting" {
		if r, ok := a.pendingPark[g]; ok {
			delete(a.pendingPark, g)
			r.Waker = a.waker(ev)
		}
	}
	if ev.From != "Running" {
		return
	}

	var r *Record
	switch {
	case ev.To == "Runnable" && ev.Reason == "preempted":
		// GoPreempt: goschedImpl(gp, true) (1.21: gopreempt_m), or goyield_m.
		path, where := classifyPreemptStack(ev.TransitionStack, a.Format)
		r = a.newRecord(ev)
		switch path {
		case "async":
			r.Kind, r.Path, r.Outcome = KindAsyncReschedule, "async", "reschedule"
			r.InterruptedPC = interruptedPC(where)
		case "yield":
			r.Kind, r.Path, r.Outcome = KindYield, "", "yield"
		default:
			r.Kind, r.Path, r.Outcome = KindStackCheckReschedule, "stack_check", "reschedule"
		}
		r.Where = where
	case ev.To == "Runnable" && ev.Reason == "runtime.Gosched":
		r = a.newRecord(ev)
		r.Outcome = "gosched"
		if goschedNotImpl(ev.TransitionStack) {
			r.Kind = KindGoschedNotImpl
		} else {
			r.Kind = KindGosched
		}
	case ev.To == "Waiting" && ev.Reason == "preempted":
		// preemptPark (1.22+). Stack only from 1.26 on.
		r = a.newRecord(ev)
		r.Outcome = "park"
		if len(ev.TransitionStack) == 0 {
			r.Kind, r.Path = KindParkUnknownPath, "unknown"
		} else {
			path, where := classifyPreemptStack(ev.TransitionStack, a.Format)
			if path == "async" {
				r.Kind, r.Path = KindAsyncPark, "async"
				r.InterruptedPC = interruptedPC(where)
			} else {
				r.Kind, r.Path = KindStackCheckPark, "stack_check"
			}
			r.Where = where
		}
		a.pendingPark[g] = r
	case ev.To == "Waiting" && ev.Reason == "" && len(ev.TransitionStack) == 0 && a.IsV1():
		// Go 1.21: preemptPark writes GoBlock with skip 0, i.e. no stack and
		// no reason. The only other such event is the GC mark worker's park.
		if strings.HasPrefix(a.runLabel[g], "GC ") || a.gcWorker[g] {
			return
		}
		r = a.newRecord(ev)
		r.Kind, r.Path, r.Outcome = KindParkUnknownPath, "unknown", "park"
		r.stackless = true
		a.pendingPark[g] = r
	default:
		return
	}
	a.records = append(a.records, r)
}

func (a *Analyzer) newRecord(ev *Event) *Record {
	return &Record{
		Ts:     ev.Time,
		GoID:   ev.ID,
		M:      ev.M,
		P:      ev.P,
		Reason: ev.Reason,
		Frames: a.top(ev.TransitionStack),
		Line:   ev.Line,
	}
}

func (a *Analyzer) waker(ev *Event) *Waker {
	w := &Waker{Ts: ev.Time, GoID: ev.G, Label: a.runLabel[ev.G], Frames: a.top(ev.Stack), Cause: "unknown"}
	for _, f := range ev.Stack {
		fn := f.Func
		switch {
		case strings.HasPrefix(fn, "runtime.traceAdvance"), fn == "runtime.StopTrace", fn == "runtime.StartTrace",
			strings.HasPrefix(fn, "runtime.(*traceAdvancerState)"):
			w.Cause = "trace"
			return w
		}
	}
	for _, f := range ev.Stack {
		fn := f.Func
		switch {
		case fn == "runtime.gcBgMarkWorker", fn == "runtime.gcDrain", fn == "runtime.gcDrainN",
			fn == "runtime.markroot", fn == "runtime.scanstack", strings.HasPrefix(fn, "runtime.gcAssistAlloc"),
			strings.HasPrefix(fn, "runtime.gcMark"), fn == "runtime.gcStart":
			w.Cause = "gc"
			return w
		}
	}
	if ev.G >= 0 && (a.gcWorker[ev.G] || strings.HasPrefix(a.runLabel[ev.G], "GC ") || a.assist[ev.G] > 0) {
		w.Cause = "gc"
	}
	return w
}

func interruptedPC(where *Frame) *uint64 {
	if where == nil || where.PC == 0 {
		return nil
	}
	pc := where.PC + 1
	return &pc
}

func isAsyncFrame(f Frame) bool {
	return f.Func == "runtime.asyncPreempt" || f.Func == "runtime.asyncPreempt2" ||
		strings.HasPrefix(f.Func, "runtime.asyncPreempt2.")
}

// classifyPreemptStack tells how a goroutine reached goschedImpl(gp, true) /
// preemptPark from the stack the tracer recorded for it:
//
//   - async: the stack starts with runtime.asyncPreempt (1.21–1.24, the
//     asyncPreempt2 frame is skipped) or asyncPreempt2 < asyncPreempt (1.25+);
//     the next frame is the interrupted user frame.
//   - yield: goyield_m (sync.Mutex/semaphore handoff) also writes GoPreempt;
//     its stack starts with runtime.goyield (1.25+) or runtime.semrelease1
//     (1.21–1.24, goyield skipped). From 1.25 a stack starting with
//     semrelease1 itself is a stack-check preemption in semrelease1's
//     prologue (seen in gcMarkDone), not a yield. Before 1.25 a stack-check
//     preemption two calls below semrelease1 would also start there; nothing
//     in the trace tells them apart.
//   - stack_check: anything else. 1.25+ starts with the function whose
//     prologue called morestack; 1.21–1.24 lose that frame and its caller's
//     (the stack starts at the caller's caller, or is empty).
func classifyPreemptStack(st []Frame, format int) (string, *Frame) {
	for i := 0; i < len(st) && i < 3; i++ {
		if isAsyncFrame(st[i]) {
			for j := i + 1; j < len(st); j++ {
				if !isAsyncFrame(st[j]) {
					f := st[j]
					return "async", &f
				}
			}
			return "async", nil
		}
	}
	if len(st) > 0 && (st[0].Func == "runtime.goyield" ||
		st[0].Func == "runtime.semrelease1" && format != 0 && format < 25) {
		return "yield", nil
	}
	if len(st) > 0 && st[0].PC != 0 && (format == 0 || format >= 25) {
		f := st[0]
		return "stack_check", &f
	}
	return "stack_check", nil
}

// goschedNotImpl reports GoSched events that the runtime writes without going
// through goschedImpl: procresize's "pretend we were descheduled", Go 1.21's
// StopTrace, and the debugger call injection.
func goschedNotImpl(st []Frame) bool {
	for _, f := range st {
		switch {
		case f.Func == "runtime.procresize", f.Func == "runtime.StopTrace", f.Func == "runtime.StartTrace",
			f.Func == "runtime.traceGoSched", strings.HasPrefix(f.Func, "runtime.debugCall"):
			return true
		}
	}
	return false
}

// ClockInfo describes how trace times map to CLOCK_MONOTONIC.
type ClockInfo struct {
	TraceClock   string `json:"trace_clock"`
	MonoMappable bool   `json:"mono_mappable"`
	Method       string `json:"method"`    // identity | snapshot_offset | anchor_start_ns | none
	OffsetNs     int64  `json:"offset_ns"` // mono_ns = ts + offset_ns
	AccuracyNs   int64  `json:"accuracy_ns"`
	Note         string `json:"note"`

	Snapshots          int    `json:"clock_snapshots"`
	SnapshotMaxAbsDiff *int64 `json:"snapshot_max_abs_diff_ns,omitempty"`
	AnchorTs           *int64 `json:"anchor_ts,omitempty"`             // trace time of the last event inside runtime/trace.Start
	AnchorMinusStartNs *int64 `json:"anchor_minus_start_ns,omitempty"` // anchor_ts - start_ns, before mapping
	StopAnchorTs       *int64 `json:"stop_anchor_ts,omitempty"`        // first event inside runtime/trace.Stop, if any
}

func i64(v int64) *int64 { return &v }

// Clock decides the trace-time -> CLOCK_MONOTONIC mapping. startNS is the
// CLOCK_MONOTONIC time read right after runtime/trace.Start returned (the
// fixtures' start_ns), or 0 if unknown.
func (a *Analyzer) Clock(startNS int64) ClockInfo {
	c := ClockInfo{Snapshots: a.snapshots}
	if a.snapshots > 0 {
		c.SnapshotMaxAbsDiff = i64(a.snapMaxAbsDiff)
	}
	if a.haveTraceStart {
		c.AnchorTs = i64(a.traceStartTs)
		if startNS != 0 && !a.IsV1() {
			c.AnchorMinusStartNs = i64(a.traceStartTs - startNS)
		}
	}
	if a.haveTraceStop {
		c.StopAnchorTs = i64(a.traceStopTs)
	}
	anchor := func(clockNote string, accuracy int64) {
		if startNS == 0 {
			c.Method = "none"
			c.Note = clockNote + " Pass -start-ns (CLOCK_MONOTONIC read right after runtime/trace.Start returned, the fixtures' start_ns) to map it."
			return
		}
		at := a.traceStartTs
		c.Note = clockNote + " Mapped by anchoring the last event written inside runtime/trace.Start (the trace reader goroutine's creation) to -start-ns: mapped times are ~1-2 us late (that event precedes the fixture's start_ns by 0.9-2.0 us on 1.22-1.27 traces), plus the drift of the trace's tick rate."
		if !a.haveTraceStart {
			at = a.firstTs
			accuracy = 1_000_000
			c.Note = clockNote + " No event inside runtime/trace.Start found: anchored the first event to -start-ns (error up to ~1 ms)."
		}
		c.MonoMappable = true
		c.Method = "anchor_start_ns"
		c.OffsetNs = startNS - at
		c.AccuracyNs = accuracy
	}
	switch {
	case a.IsV1():
		c.TraceClock = "cputicks (TSC), converted to ns relative to the first event"
		anchor("Go 1.21 format: timestamps are relative to the trace's first event, not CLOCK_MONOTONIC; the tick rate is averaged over the trace itself (drift within a few us).", 10_000)
	case a.Format == 22:
		c.TraceClock = "cputicks/64 (TSC) scaled by the runtime's estimated tick rate"
		anchor("Go 1.22 format: TSC-based, scaled by the runtime's start-up tick-rate estimate, not CLOCK_MONOTONIC (on this project's hosts it lands within ~2 us of it, but nothing guarantees that).", 100_000)
	case a.Format >= 23 || (a.Format == 0 && a.snapshots > 0):
		c.TraceClock = "nanotime/64 (CLOCK_MONOTONIC) on Linux, times 64 ns units"
		c.MonoMappable = true
		c.Method = "identity"
		c.AccuracyNs = 64
		c.Note = "Go 1.23+ on Linux: trace time = floor(CLOCK_MONOTONIC/64)*64, so the true time is in [ts, ts+64)."
		if a.snapshots > 0 && a.snapMaxAbsDiff > 1_000_000 {
			// Not a nanotime clock (not Linux?): use the snapshot's offset.
			c.Method = "snapshot_offset"
			c.OffsetNs = a.snapFirstDiff
			c.AccuracyNs = 1_000
			c.TraceClock = "not nanotime (clock snapshot disagrees)"
			c.Note = "Clock snapshot (Go 1.25+) shows the trace clock is not CLOCK_MONOTONIC; mapped with the snapshot's offset."
		} else if a.snapshots > 0 {
			c.Note += " Confirmed by the Go 1.25+ clock snapshots (Mono vs Trace)."
		}
	default:
		c.TraceClock = "unknown"
		anchor("Unknown trace format.", 1_000_000)
	}
	return c
}

// Result is the tool's JSON output.
type Result struct {
	Tool        string             `json:"tool"`
	Schema      int                `json:"schema"`
	TraceFile   string             `json:"trace_file,omitempty"`
	TraceFormat string             `json:"trace_format"`
	GoVersion   string             `json:"go_version"`
	Parser      ParserInfo         `json:"parser"`
	Clock       ClockInfo          `json:"clock"`
	Window      Window             `json:"window"`
	Filter      *Filter            `json:"filter"`
	Counts      *Counts            `json:"counts"`
	InWindow    *Counts            `json:"counts_in_window"`
	ByGoroutine map[string]*Counts `json:"by_goroutine"`
	Transitions map[string]int     `json:"running_transitions"`
	Events      []*Record          `json:"events"`
	Parse       ParseStats         `json:"parse"`
	Warnings    []string           `json:"warnings"`
	Error       string             `json:"error,omitempty"`
}

// ParserInfo says how the trace was decoded.
type ParserInfo struct {
	Command   string `json:"command"`
	GoVersion string `json:"go_version,omitempty"`
}

// Window is the span of the trace's events.
type Window struct {
	FirstTs    int64  `json:"first_ts"`
	LastTs     int64  `json:"last_ts"`
	FirstMono  *int64 `json:"first_mono_ns"`
	LastMono   *int64 `json:"last_mono_ns"`
	DurationNs int64  `json:"duration_ns"`
}

// Filter is the CLOCK_MONOTONIC window given with -start-ns/-end-ns.
type Filter struct {
	StartNs int64 `json:"start_ns"`
	EndNs   int64 `json:"end_ns"`
}

// goVersionsOfFormat names the Go releases that write a trace format.
func goVersionsOfFormat(f int) string {
	switch f {
	case 21:
		return "go1.21 (format also used by 1.19-1.20)"
	case 22:
		return "go1.22"
	case 23:
		return "go1.23 or go1.24"
	case 25:
		return "go1.25"
	case 26:
		return "go1.26 or go1.27"
	case 0:
		return "unknown"
	}
	return "go1." + strconv.Itoa(f) + "+"
}

// Finish builds the result. startNS/endNS are 0 when not given.
func (a *Analyzer) Finish(startNS, endNS int64) *Result {
	res := &Result{
		Tool:        "tracecount",
		Schema:      1,
		Counts:      newCounts(),
		ByGoroutine: map[string]*Counts{},
		Transitions: a.transitions,
		Events:      []*Record{},
		Warnings:    []string{},
	}
	if a.Format != 0 {
		res.TraceFormat = fmt.Sprintf("go 1.%d trace", a.Format)
	} else if a.v1Detected {
		res.TraceFormat = "go 1.21 trace (detected from the parsed text)"
	} else {
		res.TraceFormat = "unknown"
	}
	f := a.Format
	if f == 0 && a.v1Detected {
		f = 21
	}
	res.GoVersion = goVersionsOfFormat(f)

	res.Clock = a.Clock(startNS)
	mono := func(ts int64) *int64 {
		if !res.Clock.MonoMappable {
			return nil
		}
		return i64(ts + res.Clock.OffsetNs)
	}
	res.Window = Window{FirstTs: a.firstTs, LastTs: a.lastTs, DurationNs: a.lastTs - a.firstTs,
		FirstMono: mono(a.firstTs), LastMono: mono(a.lastTs)}
	if startNS != 0 || endNS != 0 {
		res.Filter = &Filter{StartNs: startNS, EndNs: endNS}
		if res.Clock.MonoMappable {
			res.InWindow = newCounts()
		} else {
			res.Warnings = append(res.Warnings, "-start-ns/-end-ns given but trace times cannot be mapped to CLOCK_MONOTONIC: counts_in_window is null")
		}
	}

	for _, r := range a.records {
		if r.stackless && a.gcWorker[r.GoID] {
			// Identified as a GC mark worker later in the trace: its own park.
			continue
		}
		r.Mono = mono(r.Ts)
		if r.Waker != nil {
			r.Waker.Mono = mono(r.Waker.Ts)
		}
		res.Counts.add(r)
		key := strconv.FormatInt(r.GoID, 10)
		if res.ByGoroutine[key] == nil {
			res.ByGoroutine[key] = newCounts()
		}
		res.ByGoroutine[key].add(r)
		if res.InWindow != nil && r.Mono != nil {
			in := *r.Mono >= startNS && (endNS == 0 || *r.Mono <= endNS)
			r.InWindow = &in
			if in {
				res.InWindow.add(r)
			}
		}
		res.Events = append(res.Events, r)
	}
	sort.SliceStable(res.Events, func(i, j int) bool { return res.Events[i].Ts < res.Events[j].Ts })
	if len(a.pendingPark) > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%d parked goroutine(s) not resumed before the trace ended (waker unknown)", len(a.pendingPark)))
	}
	if a.IsV1() {
		res.Warnings = append(res.Warnings, "Go 1.21 trace: preemptPark events have no stack (async vs stack-check unknown: park_unknown_path) and are told from GC-worker parks by the worker's GC label")
	} else if f == 22 || f == 23 || f == 25 {
		res.Warnings = append(res.Warnings, "Go 1.22-1.25 trace: preemptPark events have no stack (dropg runs before the event), so parks are counted in park_unknown_path")
	}
	return res
}
