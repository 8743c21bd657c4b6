package main

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/ibackup/ibackup/mobilebackup2"
	"github.com/schollz/progressbar/v3"
)

// progress shows mobilebackup2 events: a bar on a terminal (files, bytes,
// rate, ETA), JSON lines with --json, or one line per phase otherwise.
// Events arrive on the backup's goroutine; phone events (passcode prompt,
// cancel) from the sync lock's watcher. mu serialises the output of both.
type progress struct {
	mu    sync.Mutex
	e     *env
	json  *json.Encoder
	bar   *progressbar.ProgressBar
	phase mobilebackup2.Phase
	seen  map[mobilebackup2.Phase]bool // phases already announced (plain mode)
	last  mobilebackup2.Event
}

func newProgress(e *env, asJSON bool) *progress {
	p := &progress{e: e, seen: map[mobilebackup2.Phase]bool{}}
	if asJSON {
		p.json = json.NewEncoder(e.stdout)
	}
	return p
}

// jsonEvent is one JSON line of --json output.
type jsonEvent struct {
	Event      string  `json:"event"`
	Phase      string  `json:"phase,omitempty"`
	Percent    float64 `json:"percent"`
	Files      int     `json:"files"`
	Bytes      int64   `json:"bytes"`
	TotalBytes int64   `json:"total_bytes,omitempty"`
	File       string  `json:"file,omitempty"`
	Time       string  `json:"time"`
}

// emit writes any value as one JSON line (--json mode only).
func (p *progress) emit(v any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json != nil {
		_ = p.json.Encode(v)
	}
}

// event receives one progress event.
func (p *progress) event(ev mobilebackup2.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = ev
	if p.json != nil {
		_ = p.json.Encode(jsonEvent{Event: "progress", Phase: string(ev.Phase), Percent: ev.Percent, Files: ev.Files,
			Bytes: ev.Bytes, TotalBytes: ev.TotalBytes, File: ev.CurrentFile, Time: time.Now().UTC().Format(time.RFC3339Nano)})
		return
	}
	if !p.e.tty {
		// Phases interleave (receiving, moving, receiving, ...); announce each once.
		if !p.seen[ev.Phase] && ev.Phase != mobilebackup2.PhaseDone {
			p.seen[ev.Phase] = true
			fmt.Fprintf(p.e.stderr, "%s...\n", ev.Phase)
		}
		return
	}
	if ev.Phase == mobilebackup2.PhaseReceiving && p.bar == nil {
		p.bar = progressbar.NewOptions64(max(ev.TotalBytes, ev.Bytes+1),
			progressbar.OptionSetWriter(p.e.stderr),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetWidth(30),
			progressbar.OptionClearOnFinish(),
		)
	}
	if p.bar != nil {
		// The phone's total grows batch by batch (§2.3) and the bar finishes
		// for good once it reaches its max, so keep the max ahead of the count.
		if want := max(ev.TotalBytes, ev.Bytes+1); want > p.bar.GetMax64() {
			p.bar.ChangeMax64(want)
		}
		p.bar.Describe(fmt.Sprintf("%-9s %5d files", ev.Phase, ev.Files))
		_ = p.bar.Set64(ev.Bytes)
	} else if ev.Phase != p.phase {
		fmt.Fprintf(p.e.stderr, "%s...\n", ev.Phase)
	}
	p.phase = ev.Phase
}

// done ends the bar.
func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Finish()
		p.bar = nil
	}
}

// note prints a line to stderr between bar updates (plain and tty modes).
func (p *progress) note(format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Clear()
	}
	fmt.Fprintf(p.e.stderr, format, a...)
}
