"""mdevctl meets ENOSPC: what it reports, and that nothing is left (docs/testing.md)."""

import os

U = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"
MTTY2 = "class/mdev_bus/mtty/mdev_supported_types/mtty-2"


def read(tree, path):
    with open(os.path.join(tree.root, path)) as f:
        return f.read()


def test_mdevctl_start_reports_enospc_and_leaves_nothing(mdevfs):
    before = read(mdevfs, MTTY2 + "/available_instances")
    mark = mdevfs.mark()
    with mdevfs.fault(op="create", type="mtty-2", errno="ENOSPC", times=1) as fault:
        # mdevctl hard-codes /sys: run() gives it this tree there
        r = mdevfs.run(["mdevctl", "start", "-u", U, "-p", "mtty", "-t", "mtty-2"], capture_output=True, text=True)
    assert r.returncode == 1
    assert "Failed to create mdev %s, type mtty-2 on mtty" % U in r.stderr
    assert "No space left on device (os error 28)" in r.stderr
    # nothing is left: no device, the capacity back, nothing for mdevctl to list
    assert os.listdir(os.path.join(mdevfs.root, "bus/mdev/devices")) == []
    assert read(mdevfs, MTTY2 + "/available_instances") == before
    assert mdevfs.run(["mdevctl", "list"], capture_output=True, text=True).stdout.strip() == ""
    # the journal says what mdevctl wrote, and that the rule made it fail
    writes = [e for e in mdevfs.journal(since=mark) if e["kind"] == "write"]
    assert [(w["op"], w["data"], w["errno"], w["fault"]) for w in writes] == [("create", U, "ENOSPC", fault.id)]
    # the rule fired once (times=1) and went with the block: the next start works
    r = mdevfs.run(["mdevctl", "start", "-u", U, "-p", "mtty", "-t", "mtty-2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert os.listdir(os.path.join(mdevfs.root, "bus/mdev/devices")) == [U]
