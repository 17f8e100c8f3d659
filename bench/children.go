package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// children are the processes the bench started. Every one is stopped by
// stop, and killAll (deferred by run) kills whatever is left, also on an
// error or ctrl-C; the kernel kills them too should the bench itself die
// (dieWithParent).
type children struct {
	mu  sync.Mutex
	set map[*child]struct{}
}

// child is one started process.
type child struct {
	name   string
	cmd    *exec.Cmd
	stdin  *os.File // the write end of the child's stdin; closing it tells a worker to stop
	stdout *tail
	stderr *tail // nil when stderr goes to a file
	// logPath is the file stderr goes to, when it does (qualfile's log).
	logPath string
	admin   string // qualfile's admin listener

	done  chan struct{}
	err   error // of Wait, once done is closed
	owner *children
}

// start starts cmd. Its stdout and (unless cmd.Stderr is set) stderr are
// kept, the last 64 KiB of each, for error messages.
func (c *children) start(name string, cmd *exec.Cmd) (*child, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	ch := &child{name: name, cmd: cmd, stdin: w, stdout: newTail(64 << 10), done: make(chan struct{}), owner: c}
	cmd.Stdin = r
	cmd.Stdout = ch.stdout
	if cmd.Stderr == nil {
		ch.stderr = newTail(64 << 10)
		cmd.Stderr = ch.stderr
	}
	dieWithParent(cmd)
	err = cmd.Start()
	_ = r.Close()
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c.mu.Lock()
	if c.set == nil {
		c.set = map[*child]struct{}{}
	}
	c.set[ch] = struct{}{}
	c.mu.Unlock()
	go func() {
		ch.err = cmd.Wait()
		close(ch.done)
	}()
	return ch, nil
}

func (ch *child) pid() int { return ch.cmd.Process.Pid }

// exited reports whether the process has ended, with Wait's error.
func (ch *child) exited() (bool, error) {
	select {
	case <-ch.done:
		return true, ch.err
	default:
		return false, nil
	}
}

// output is what the process wrote last, for an error message.
func (ch *child) output() string {
	s := ch.stdout.String()
	if ch.stderr != nil {
		s += ch.stderr.String()
	}
	return s
}

// logTail is the last n lines of the process's output and log file.
func (ch *child) logTail(n int) string {
	s := ch.output()
	if ch.logPath != "" {
		if f, err := os.Open(ch.logPath); err == nil {
			defer f.Close()
			if st, err := f.Stat(); err == nil {
				off := max(0, st.Size()-64<<10)
				buf := make([]byte, st.Size()-off)
				if _, err := f.ReadAt(buf, off); err == nil || errors.Is(err, io.EOF) {
					s += string(buf)
				}
			}
		}
	}
	return lastLines(s, n)
}

// stop asks the process to end (stdin closed, SIGTERM), waits up to grace,
// then kills it, and waits until it is gone.
func (ch *child) stop(grace time.Duration) {
	_ = ch.stdin.Close()
	_ = ch.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-ch.done:
	case <-time.After(grace):
		_ = ch.cmd.Process.Kill()
		<-ch.done
	}
	ch.owner.mu.Lock()
	delete(ch.owner.set, ch)
	ch.owner.mu.Unlock()
}

// killAll kills every process still running and waits for each.
func (c *children) killAll() {
	c.mu.Lock()
	left := make([]*child, 0, len(c.set))
	for ch := range c.set {
		left = append(left, ch)
	}
	c.set = nil
	c.mu.Unlock()
	for _, ch := range left {
		_ = ch.stdin.Close()
		_ = ch.cmd.Process.Kill()
		<-ch.done
	}
}

// tail keeps the last max bytes written to it; it also notices a line
// "ready" (a worker's signal that it consumes).
type tail struct {
	mu    sync.Mutex
	buf   []byte
	max   int
	ready chan struct{}
	once  sync.Once
}

func newTail(max int) *tail { return &tail{max: max, ready: make(chan struct{})} }

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if bytes.HasPrefix(t.buf, []byte(readyLine)) || bytes.Contains(t.buf, []byte("\n"+readyLine)) {
		t.once.Do(func() { close(t.ready) })
	}
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// readyLine is what a worker prints on stdout once it consumes.
const readyLine = "ready\n"

// waitReady waits until the child printed readyLine, exited, or timeout.
func (ch *child) waitReady(timeout time.Duration) error {
	select {
	case <-ch.stdout.ready:
		return nil
	case <-ch.done:
		return fmt.Errorf("%s exited before it was ready (%v):\n%s", ch.name, ch.err, lastLines(ch.output(), 30))
	case <-time.After(timeout):
		return fmt.Errorf("%s not ready within %s:\n%s", ch.name, timeout, lastLines(ch.output(), 30))
	}
}

// errExited is the error of a child that ended while it was measured.
var errExited = errors.New("process exited")

func lastLines(s string, n int) string {
	lines := bytes.Split(bytes.TrimRight([]byte(s), "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
