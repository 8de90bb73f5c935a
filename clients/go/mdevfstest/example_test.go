package mdevfstest_test

// The worked examples of docs/testing.md: code that takes a sysfs root, tested through Root()
// while a fault makes a create fail; and code that hard-codes /sys, run inside mdevfs exec.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"mdevfs/mdevfstest"
)

// Available reads a type's available_instances under a sysfs root, as discovery code does.
func Available(sysfs, parent, mdevType string) (int, error) {
	b, err := os.ReadFile(filepath.Join(sysfs, "class/mdev_bus", parent, "mdev_supported_types", mdevType, "available_instances"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// CreateMdev creates an mdev under a sysfs root, as a device manager does.
func CreateMdev(sysfs, parent, mdevType, uuid string) error {
	if n, err := Available(sysfs, parent, mdevType); err != nil || n == 0 {
		return fmt.Errorf("no %s left on %s (%v)", mdevType, parent, err)
	}
	create := filepath.Join(sysfs, "class/mdev_bus", parent, "mdev_supported_types", mdevType, "create")
	if err := os.WriteFile(create, []byte(uuid+"\n"), 0); err != nil {
		return fmt.Errorf("create %s: %w", uuid, err)
	}
	return nil
}

const U = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"

func TestCreateMdevReportsENOSPC(t *testing.T) {
	tr := mdevfstest.New(t) // the samples profile: mtty, mdpy, mbochs
	mark := tr.Mark(t)
	id := tr.Fault(t, mdevfstest.Rule{
		Match:   mdevfstest.Match{Op: "create", Type: "mtty-2"},
		Action:  mdevfstest.Errno("ENOSPC"),
		Trigger: &mdevfstest.Trigger{Times: 1},
	})

	err := CreateMdev(tr.Root(), "mtty", "mtty-2", U)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("CreateMdev: %v, want ENOSPC", err)
	}
	if _, err := os.Stat(filepath.Join(tr.Root(), "bus/mdev/devices", U)); !os.IsNotExist(err) {
		t.Fatalf("the failed create left %s behind (%v)", U, err)
	}
	if n, _ := Available(tr.Root(), "mtty", "mtty-2"); n != 12 {
		t.Fatalf("available_instances %d after the failed create, want 12", n)
	}
	var writes []string
	for _, e := range tr.Journal(t, mark.Journal) {
		if e.Kind == "write" {
			writes = append(writes, e.Op+" "+e.Errno+" "+e.FaultID())
		}
	}
	if want := []string{"create ENOSPC " + id}; strings.Join(writes, ",") != strings.Join(want, ",") {
		t.Fatalf("journal writes %q, want %q", writes, want)
	}
	// times=1: the rule has fired; the next create works
	if err := CreateMdev(tr.Root(), "mtty", "mtty-2", U); err != nil {
		t.Fatal(err)
	}
	tr.Wait(t, mdevfstest.WaitFor{Device: U, State: "active", Timeout: 5})
	tr.Reset(t)
	if s := tr.State(t); len(s.Devices) != 0 {
		t.Fatalf("devices after Reset: %v", s.Devices)
	}
}

func TestSeveralTreesWithProfiles(t *testing.T) {
	a := mdevfstest.New(t)
	b := mdevfstest.New(t, mdevfstest.Profile("nvidia-t4"), mdevfstest.ABI("6.1"))
	if err := CreateMdev(a.Root(), "mtty", "mtty-2", U); err != nil {
		t.Fatal(err)
	}
	a.Wait(t, mdevfstest.WaitFor{Event: "bind:" + U, Timeout: 5})
	if s := a.State(t); len(s.Devices) != 1 || s.Devices[0].UUID != U || s.Devices[0].State != "active" {
		t.Fatalf("a's devices: %+v", s.Devices)
	}
	if s := b.State(t); len(s.Devices) != 0 || s.ABI != "6.1" {
		t.Fatalf("b: %+v", s)
	}
	if _, err := os.Stat(filepath.Join(b.Root(), "class/mdev_bus/0000:00:04.0")); err != nil {
		t.Fatal(err)
	}
}

// ReadsHardcodedSys is code that knows only /sys.
func ReadsHardcodedSys() ([]string, error) {
	entries, err := os.ReadDir("/sys/class/mdev_bus")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}

func TestHardcodedSysInsideExec(t *testing.T) {
	if !mdevfstest.InExec() {
		mdevfstest.RunInExec(t, mdevfstest.Profile("samples"))
		return
	}
	tr := mdevfstest.Attach(t) // this run's /sys is the tree
	names, err := ReadsHardcodedSys()
	if err != nil || strings.Join(names, " ") != "mbochs mdpy mtty" {
		t.Fatalf("/sys/class/mdev_bus: %v %v", names, err)
	}
	if err := CreateMdev("/sys", "mtty", "mtty-1", U); err != nil {
		t.Fatal(err)
	}
	tr.Wait(t, mdevfstest.WaitFor{Device: U, State: "active", Timeout: 5})
}

func TestDiscoverySeesAReadFault(t *testing.T) {
	tr := mdevfstest.New(t, mdevfstest.Profile("samples"))
	tr.Fault(t, mdevfstest.Rule{
		Match:  mdevfstest.Match{Op: "read", Attr: "available_instances", Path: "/sys/devices/virtual/mtty/mtty/mdev_supported_types/mtty-2/*"},
		Action: mdevfstest.Content("0\n"),
	})
	if n, err := Available(tr.Root(), "mtty", "mtty-2"); err != nil || n != 0 {
		t.Fatalf("mtty-2 available_instances %d (%v), want the fault's 0", n, err)
	}
	if n, _ := Available(tr.Root(), "mtty", "mtty-1"); n != 24 {
		t.Fatalf("mtty-1 available_instances %d, want 24: the rule matches mtty-2 only", n)
	}
	if err := CreateMdev(tr.Root(), "mtty", "mtty-2", U); err == nil || !strings.Contains(err.Error(), "no mtty-2 left on mtty") {
		t.Fatalf("CreateMdev: %v, want it to give up on the capacity it read", err)
	}
	if len(tr.Faults(t)) != 1 {
		t.Fatal("the rule is listed")
	}
}
