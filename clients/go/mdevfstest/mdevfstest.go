// Package mdevfstest starts mdevfs trees (an emulated Linux VFIO mdev sysfs) from Go tests and
// steers them over their control API (docs/control-api.md): HTTP on the daemon's unix socket.
// Only the standard library. The daemon is the mdevfs command: the one MDEVFS_CLI names, else
// the first on PATH.
//
//	tr := mdevfstest.New(t)                 // a fresh tree, stopped at t's cleanup
//	root := tr.Root()                        // pass it to code that takes a sysfs root
//	tr.Fault(t, mdevfstest.Rule{Match: mdevfstest.Match{Op: "create"}, Action: mdevfstest.Errno("ENOSPC")})
//
// For code that hard-codes /sys, RunInExec runs the test itself again inside `mdevfs exec`.
package mdevfstest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Option configures New, RunInExec and Command.
type Option func(*config)

type config struct {
	profile     string
	profileJSON any
	abi         string
	backend     string
	args        []string
	timeout     time.Duration
}

// Profile is a built-in profile's name (samples, nvidia-t4, ...) or a profile file.
func Profile(nameOrFile string) Option { return func(c *config) { c.profile = nameOrFile } }

// ProfileObject is a profile given as a value (marshalled to JSON: a map or a struct).
func ProfileObject(v any) Option { return func(c *config) { c.profileJSON = v } }

// ABI is the kernel ABI to emulate ("6.1" or "4.17").
func ABI(v string) Option { return func(c *config) { c.abi = v } }

// Backend is the FUSE backend ("direct" or "fuse-native").
func Backend(v string) Option { return func(c *config) { c.backend = v } }

// Args are more options for the mdevfs command (mount or exec).
func Args(a ...string) Option { return func(c *config) { c.args = append(c.args, a...) } }

// StartTimeout bounds how long New waits for the daemon to answer (default 30 s).
func StartTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// CLI is the mdevfs command: $MDEVFS_CLI, else mdevfs on PATH.
func CLI() (string, error) {
	if p := os.Getenv("MDEVFS_CLI"); p != "" {
		if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("MDEVFS_CLI=%s is not an executable file", p)
		}
		return p, nil
	}
	p, err := exec.LookPath("mdevfs")
	if err != nil {
		return "", errors.New("mdevfs is not on PATH and MDEVFS_CLI is not set: install it (in a clone: `sudo npm install -g .`) or set MDEVFS_CLI to a clone's scripts/mdevfs")
	}
	return p, nil
}

// profileArgs turns the profile options into --profile (a value is written to a file in dir).
func (c *config) profileArgs(dir string) ([]string, error) {
	var out []string
	switch {
	case c.profileJSON != nil:
		data, err := json.Marshal(c.profileJSON)
		if err != nil {
			return nil, err
		}
		f := filepath.Join(dir, "profile.json")
		if err := os.WriteFile(f, data, 0o600); err != nil {
			return nil, err
		}
		out = append(out, "--profile", f)
	case c.profile != "":
		out = append(out, "--profile", c.profile)
	}
	if c.abi != "" {
		out = append(out, "--abi", c.abi)
	}
	if c.backend != "" {
		out = append(out, "--backend", c.backend)
	}
	return append(out, c.args...), nil
}

// whyNotHere says why an ordinary user cannot mount a tree on this machine ("": nothing known stops it).
func whyNotHere() string {
	if os.Geteuid() == 0 {
		return ""
	}
	if f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0); err != nil {
		return fmt.Sprintf("not root, and /dev/fuse is not open to this user (%v): it must be mode 0666", err)
	} else {
		f.Close()
	}
	if _, err := exec.LookPath("fusermount"); err != nil {
		if _, err3 := exec.LookPath("fusermount3"); err3 != nil {
			return "not root, and no fusermount on PATH (Debian: fuse3) to mount for an ordinary user"
		}
	}
	return ""
}

// Tree is a running emulated tree.
type Tree struct {
	root   string
	socket string
	dir    string
	cmd    *exec.Cmd
	log    *bytes.Buffer
	http   *http.Client
	exited chan struct{}
}

// New starts a daemon serving a fresh tree in a temporary directory and registers its stop with
// t.Cleanup. It fails the test, saying why, if the tree cannot start.
func New(t testing.TB, opts ...Option) *Tree {
	t.Helper()
	tr, err := Start(opts...)
	if err != nil {
		t.Fatalf("mdevfstest.New: %v", err)
	}
	t.Cleanup(func() {
		if err := tr.Stop(); err != nil {
			t.Errorf("mdevfstest: stop: %v", err)
		}
	})
	return tr
}

// Start is New without a test: the caller calls Stop.
func Start(opts ...Option) (*Tree, error) {
	c := config{timeout: 30 * time.Second}
	for _, o := range opts {
		o(&c)
	}
	if why := whyNotHere(); why != "" {
		return nil, errors.New("cannot start mdevfs: " + why)
	}
	cli, err := CLI()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mdevfs-")
	if err != nil {
		return nil, err
	}
	pargs, err := c.profileArgs(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	tr := &Tree{root: filepath.Join(dir, "root"), socket: filepath.Join(dir, "control.sock"), dir: dir, log: &bytes.Buffer{}}
	tr.http = client(tr.socket)
	tr.cmd = exec.Command(cli, append([]string{"mount", tr.root, "--control", tr.socket}, pargs...)...)
	tr.cmd.Stderr = tr.log
	if err := tr.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	exited := make(chan struct{})
	go func() { _ = tr.cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(c.timeout)
	for {
		select {
		case <-exited:
			tr.cmd = nil
			os.RemoveAll(dir)
			return nil, fmt.Errorf("mdevfs mount exited: %s", strings.TrimSpace(tr.log.String()))
		default:
		}
		var ping struct{ Mounted bool }
		if err := tr.call(http.MethodGet, "/v1/ping", nil, &ping, 2*time.Second); err == nil && ping.Mounted {
			tr.exited = exited
			return tr, nil
		}
		if time.Now().After(deadline) {
			tr.exited = exited
			_ = tr.Stop()
			return nil, fmt.Errorf("mdevfs mount did not answer within %v", c.timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Attach is the tree this process runs over inside `mdevfs exec` ($MDEVFS_ROOT, $MDEVFS_CONTROL);
// nothing is stopped at cleanup.
func Attach(t testing.TB) *Tree {
	t.Helper()
	sock := os.Getenv("MDEVFS_CONTROL")
	if sock == "" {
		t.Fatal("mdevfstest.Attach: not inside mdevfs exec (MDEVFS_CONTROL is not set)")
	}
	root := os.Getenv("MDEVFS_ROOT")
	if root == "" {
		root = "/sys"
	}
	return &Tree{root: root, socket: sock, http: client(sock)}
}

func client(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true,
	}}
}

// Root is the tree's directory: it plays the role of /sys.
func (tr *Tree) Root() string { return tr.root }

// Socket is the daemon's control socket.
func (tr *Tree) Socket() string { return tr.socket }

// Stop stops the daemon (SIGTERM: it unmounts) and removes its directory; a tree attached to is left alone.
func (tr *Tree) Stop() error {
	if tr.cmd == nil {
		return nil
	}
	cmd := tr.cmd
	tr.cmd = nil
	_ = cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case <-tr.exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-tr.exited
		err = fmt.Errorf("mdevfs did not stop within 10 s of SIGTERM: killed")
	}
	if err == nil && cmd.ProcessState != nil && !cmd.ProcessState.Success() {
		err = fmt.Errorf("mdevfs exited with %v: %s", cmd.ProcessState, strings.TrimSpace(tr.log.String()))
	}
	os.RemoveAll(tr.dir)
	return err
}

// APIError is an HTTP error answered by the control API.
type APIError struct {
	Method, Path string
	Status       int
	Message      string
	Errno        string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s %s: HTTP %d: %s", e.Method, e.Path, e.Status, e.Message)
}

// call sends one request; out (if not nil) gets the JSON body of a 2xx reply.
func (tr *Tree) call(method, path string, in, out any, timeout time.Duration) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://mdevfs"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := tr.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		var e struct{ Error, Errno string }
		_ = json.Unmarshal(data, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return &APIError{Method: method, Path: path, Status: res.StatusCode, Message: e.Error, Errno: e.Errno}
	}
	if out == nil || len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	return json.Unmarshal(data, out)
}

// Match says which requests a fault rule applies to (docs/control-api.md).
type Match struct {
	Op     string `json:"op"`
	Parent string `json:"parent,omitempty"`
	Type   string `json:"type,omitempty"`
	UUID   string `json:"uuid,omitempty"`
	Attr   string `json:"attr,omitempty"`
	Path   string `json:"path,omitempty"`
}

// Action is what a fault rule does: see Errno, Delay, Hang, Succeed, Content.
type Action struct {
	Kind     string   `json:"kind"`
	Errno    string   `json:"errno,omitempty"`
	Ms       *float64 `json:"ms,omitempty"`
	JitterMs *float64 `json:"jitterMs,omitempty"`
	Content  *string  `json:"content,omitempty"`
}

// Errno fails the step with that errno (by name: "ENOSPC").
func Errno(name string) Action { return Action{Kind: "errno", Errno: name} }

// Delay makes the step wait d (plus or minus jitter).
func Delay(d, jitter time.Duration) Action {
	ms, j := float64(d.Milliseconds()), float64(jitter.Milliseconds())
	a := Action{Kind: "delay", Ms: &ms}
	if jitter > 0 {
		a.JitterMs = &j
	}
	return a
}

// Hang holds the step until Release.
func Hang() Action { return Action{Kind: "hang"} }

// Succeed makes an attribute write report success and change nothing.
func Succeed() Action { return Action{Kind: "succeed"} }

// Content makes a read return text.
func Content(text string) Action { return Action{Kind: "content", Content: &text} }

// Trigger says when a matching request fires the rule (zero values: not set).
type Trigger struct {
	After       int      `json:"after,omitempty"`
	Every       int      `json:"every,omitempty"`
	Probability *float64 `json:"probability,omitempty"`
	Seed        *uint32  `json:"seed,omitempty"`
	Times       int      `json:"times,omitempty"`
	Sticky      bool     `json:"sticky,omitempty"`
}

// Rule is a fault rule.
type Rule struct {
	ID      string   `json:"id,omitempty"`
	Match   Match    `json:"match"`
	Action  Action   `json:"action"`
	Trigger *Trigger `json:"trigger,omitempty"`
}

// ruleID reads a rule's id, a string or a number.
func ruleID(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return strings.TrimSpace(string(raw))
}

// Fault adds a fault rule and removes it at t's cleanup; returns its id.
func (tr *Tree) Fault(t testing.TB, r Rule) string {
	t.Helper()
	var added struct {
		ID   json.RawMessage `json:"id"`
		Rule *struct {
			ID json.RawMessage `json:"id"`
		} `json:"rule"`
	}
	if err := tr.call(http.MethodPost, "/v1/faults", r, &added, 30*time.Second); err != nil {
		t.Fatalf("mdevfstest: add fault: %v", err)
	}
	raw := added.ID
	if added.Rule != nil {
		raw = added.Rule.ID
	}
	id := ruleID(raw)
	t.Cleanup(func() {
		var e *APIError
		if err := tr.RemoveFault(id); err != nil && !(errors.As(err, &e) && e.Status == http.StatusNotFound) {
			t.Errorf("mdevfstest: remove fault %s: %v", id, err)
		}
	})
	return id
}

// RemoveFault removes a rule now.
func (tr *Tree) RemoveFault(id string) error {
	return tr.call(http.MethodDelete, "/v1/faults/"+url.PathEscape(id), nil, nil, 30*time.Second)
}

// Release lets the requests a Hang rule holds go on.
func (tr *Tree) Release(t testing.TB, id string) {
	t.Helper()
	if err := tr.call(http.MethodPost, "/v1/faults/"+url.PathEscape(id)+"/release", nil, nil, 30*time.Second); err != nil {
		t.Fatalf("mdevfstest: release fault %s: %v", id, err)
	}
}

// JournalEntry is one thing done to the tree (docs/control-api.md names every field; Raw has them all).
type JournalEntry struct {
	Seq   int64           `json:"seq"`
	Kind  string          `json:"kind"`
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	Data  string          `json:"data"`
	Bytes *int            `json:"bytes"`
	Errno string          `json:"errno"`
	Fault json.RawMessage `json:"fault"`
	Raw   map[string]any  `json:"-"`
}

// FaultID is the id of the rule that fired on the entry ("" if none).
func (e JournalEntry) FaultID() string {
	if len(e.Fault) == 0 {
		return ""
	}
	return ruleID(e.Fault)
}

// Journal returns the journal's entries after sequence number since (0: all it holds).
func (tr *Tree) Journal(t testing.TB, since int64) []JournalEntry {
	t.Helper()
	var body struct {
		Entries []json.RawMessage `json:"entries"`
	}
	if err := tr.call(http.MethodGet, "/v1/journal?since="+strconv.FormatInt(since, 10), nil, &body, 30*time.Second); err != nil {
		t.Fatalf("mdevfstest: journal: %v", err)
	}
	out := make([]JournalEntry, 0, len(body.Entries))
	for _, raw := range body.Entries {
		var e JournalEntry
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatalf("mdevfstest: journal entry %s: %v", raw, err)
		}
		_ = json.Unmarshal(raw, &e.Raw)
		out = append(out, e)
	}
	return out
}

// Mark is a mark in the journal: Journal, its sequence number (for Journal and WaitFor.Journal's
// Since), and Seqnum, the last uevent SEQNUM then (for WaitFor.Event's Since). Journal is 0 when
// the daemon keeps no journal (--journal-size 0: the API answers null, and journal calls answer 409).
type Mark struct {
	Seqnum  int64 `json:"seqnum"`
	Journal int64 `json:"journal"`
}

// Mark puts a mark in the journal.
func (tr *Tree) Mark(t testing.TB) Mark {
	t.Helper()
	var m Mark
	if err := tr.call(http.MethodPost, "/v1/mark", struct{}{}, &m, 30*time.Second); err != nil {
		t.Fatalf("mdevfstest: mark: %v", err)
	}
	return m
}

// Faults lists the rules, each with how often it matched and fired.
func (tr *Tree) Faults(t testing.TB) []map[string]any {
	t.Helper()
	var body struct {
		Rules []map[string]any `json:"rules"`
	}
	if err := tr.call(http.MethodGet, "/v1/faults", nil, &body, 30*time.Second); err != nil {
		t.Fatalf("mdevfstest: faults: %v", err)
	}
	return body.Rules
}

// JournalMatch is a journal entry with these fields (the set ones).
type JournalMatch struct {
	Kind  string `json:"kind,omitempty"`
	Op    string `json:"op,omitempty"`
	Path  string `json:"path,omitempty"`
	Errno string `json:"errno,omitempty"`
	Fault string `json:"fault,omitempty"`
}

// WaitFor is a condition: Event ("add:UUID"), Device and State ("active", "gone", ...), or a
// Journal entry. Since: a Mark's Seqnum (events) or Journal (journal entries).
type WaitFor struct {
	Event   string        `json:"event,omitempty"`
	Device  string        `json:"device,omitempty"`
	State   string        `json:"state,omitempty"`
	Journal *JournalMatch `json:"journal,omitempty"`
	Since   int64         `json:"since,omitempty"`
	Timeout float64       `json:"timeout,omitempty"`
}

// TryWait waits for the condition (w.Timeout seconds, default 10); an *APIError with Status 408 if not met.
func (tr *Tree) TryWait(w WaitFor) (map[string]any, error) {
	if w.Timeout == 0 {
		w.Timeout = 10
	}
	var out map[string]any
	err := tr.call(http.MethodPost, "/v1/wait", w, &out, time.Duration(w.Timeout*float64(time.Second))+10*time.Second)
	return out, err
}

// Wait waits for the condition, failing the test if it is not met in time.
func (tr *Tree) Wait(t testing.TB, w WaitFor) map[string]any {
	t.Helper()
	out, err := tr.TryWait(w)
	if err != nil {
		t.Fatalf("mdevfstest: wait %+v: %v", w, err)
	}
	return out
}

// Reset puts the tree back in its profile's start state (devices, parents, faults, counters).
func (tr *Tree) Reset(t testing.TB) {
	t.Helper()
	if err := tr.call(http.MethodPost, "/v1/reset", struct{}{}, nil, 30*time.Second); err != nil {
		t.Fatalf("mdevfstest: reset: %v", err)
	}
}

// Device is a device as State lists it.
type Device struct {
	UUID   string `json:"uuid"`
	Parent string `json:"parent"`
	Type   string `json:"type"`
	State  string `json:"state"`
}

// State is GET /v1/state: its devices typed, everything in Raw.
type State struct {
	ABI     string         `json:"abi"`
	Devices []Device       `json:"devices"`
	Raw     map[string]any `json:"-"`
}

// State returns what the daemon holds now.
func (tr *Tree) State(t testing.TB) State {
	t.Helper()
	var raw json.RawMessage
	if err := tr.call(http.MethodGet, "/v1/state", nil, &raw, 30*time.Second); err != nil {
		t.Fatalf("mdevfstest: state: %v", err)
	}
	var s State
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("mdevfstest: state: %v", err)
	}
	_ = json.Unmarshal(raw, &s.Raw)
	return s
}

// Command is argv under `mdevfs exec` (a fresh tree over /sys, in a user namespace for an
// ordinary user), to run as the caller likes. Inside, the command has MDEVFS_ROOT and MDEVFS_CONTROL.
func Command(t testing.TB, argv []string, opts ...Option) *exec.Cmd {
	t.Helper()
	c := config{}
	for _, o := range opts {
		o(&c)
	}
	cli, err := CLI()
	if err != nil {
		t.Fatalf("mdevfstest.Command: %v", err)
	}
	pargs, err := c.profileArgs(t.TempDir())
	if err != nil {
		t.Fatalf("mdevfstest.Command: %v", err)
	}
	args := append(append([]string{"exec"}, pargs...), "--")
	return exec.Command(cli, append(args, argv...)...)
}

// InExec says whether this process runs inside `mdevfs exec` (RunInExec's second run).
func InExec() bool {
	return os.Getenv("MDEVFS_CONTROL") != "" && os.Getenv("MDEVFSTEST_IN_EXEC") == "1"
}

// RunInExec runs the calling test again, alone, in this test binary inside `mdevfs exec`, for
// code that hard-codes /sys; it fails t if that run fails. Use it as
//
//	if !mdevfstest.InExec() { mdevfstest.RunInExec(t); return }
//	tr := mdevfstest.Attach(t) // /sys is the tree
func RunInExec(t *testing.T, opts ...Option) {
	t.Helper()
	cmd := Command(t, []string{os.Args[0], "-test.run", "^" + regexpQuote(t.Name()) + "$", "-test.v", "-test.count=1"}, opts...)
	cmd.Env = append(os.Environ(), "MDEVFSTEST_IN_EXEC=1")
	out, err := cmd.CombinedOutput()
	t.Logf("inside mdevfs exec:\n%s", out)
	if err != nil {
		t.Fatalf("mdevfstest.RunInExec: %v", err)
	}
	if !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("mdevfstest.RunInExec: %s did not pass inside mdevfs exec", t.Name())
	}
}

func regexpQuote(name string) string {
	var b strings.Builder
	for _, r := range name {
		if strings.ContainsRune(`\.+*?()|[]{}^$`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
