"""The plugin's fixtures and the tree's verbs (docs/testing.md)."""

import os

import pytest

import mdevfs as mdevfs_module

U = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"
MTTY2 = "class/mdev_bus/mtty/mdev_supported_types/mtty-2"


def create(tree, type_dir, uuid):
    with open(os.path.join(tree.root, type_dir, "create"), "w") as f:
        f.write(uuid + "\n")


def test_a_fresh_tree_per_test(mdevfs):
    assert sorted(os.listdir(os.path.join(mdevfs.root, "class/mdev_bus"))) == ["mbochs", "mdpy", "mtty"]
    assert os.listdir(os.path.join(mdevfs.root, "bus/mdev/devices")) == []
    create(mdevfs, MTTY2, U)  # the next test does not see it


def test_the_state_wait_and_reset(mdevfs):
    mark = mdevfs.mark()
    create(mdevfs, MTTY2, U)
    met = mdevfs.wait(event="bind:" + U, since=mark, timeout=5)
    assert met["met"] is True
    state = mdevfs.state()
    assert [(d["uuid"], d["type"], d["state"]) for d in state["devices"]] == [(U, "mtty-2", "active")]
    mdevfs.reset()
    assert mdevfs.state()["devices"] == []
    assert os.listdir(os.path.join(mdevfs.root, "bus/mdev/devices")) == []
    with pytest.raises(TimeoutError):
        mdevfs.wait(device=U, state="active", timeout=0.2)


def test_a_mark_without_a_journal(mdevfs_factory):
    tree = mdevfs_factory(extra_args=["--journal-size", "0"])
    mark = tree.mark()
    assert mark.journal is None and isinstance(mark.seqnum, int)
    create(tree, MTTY2, U)
    assert tree.wait(event="add:" + U, since=mark, timeout=5)["met"] is True
    with pytest.raises(mdevfs_module.ApiError) as refused:
        tree.journal(since=mark)
    assert refused.value.status == 409


@pytest.mark.mdevfs(profile="nvidia-t4")
def test_a_profile_by_marker(mdevfs):
    assert [p["name"] for p in mdevfs.state()["parents"]] == ["0000:00:04.0"]


def test_a_profile_as_a_dict(mdevfs_factory):
    mine = {
        "parents": [
            {
                "name": "mtty",
                "path": "devices/virtual/mtty/mtty",
                "class": "mtty",
                "mdevDriver": "mtty",
                "capacity": {"model": "pool", "size": 2, "errno": "ENOSPC"},
                "types": [{"name": "1", "cost": 1}],
            }
        ]
    }
    tree = mdevfs_factory(profile=mine)
    assert os.listdir(os.path.join(tree.root, "class/mdev_bus")) == ["mtty"]
    assert os.listdir(os.path.join(tree.root, "class/mdev_bus/mtty/mdev_supported_types")) == ["mtty-1"]


def test_several_trees_from_the_factory(mdevfs_factory):
    a, b = mdevfs_factory(), mdevfs_factory(abi="4.17")
    create(a, MTTY2, U)
    assert os.listdir(os.path.join(a.root, "bus/mdev/devices")) == [U]
    assert os.listdir(os.path.join(b.root, "bus/mdev/devices")) == []
    assert b.state()["abi"] == "4.17"


def test_a_fault_holds_inside_its_block_only(mdevfs):
    with mdevfs.fault(op="create", type="mtty-2", errno="ENOSPC") as fault:
        assert [r["id"] for r in mdevfs.control.faults()] == [fault.id]
        with pytest.raises(OSError) as err:
            create(mdevfs, MTTY2, U)
        assert err.value.errno == 28
    assert mdevfs.control.faults() == []
    create(mdevfs, MTTY2, U)
    assert os.listdir(os.path.join(mdevfs.root, "bus/mdev/devices")) == [U]


def test_a_bad_rule_is_refused_by_the_daemon(mdevfs):
    with pytest.raises(mdevfs_module.ApiError) as err:
        with mdevfs.fault(op="create", errno="ENOTANERRNO"):
            pass
    assert err.value.status == 400
    assert mdevfs.control.faults() == []


def test_a_hang_holds_a_create_until_released(mdevfs):
    import threading

    mark = mdevfs.mark()
    result = {}

    def writer():
        try:
            create(mdevfs, MTTY2, U)
            result["ok"] = True
        except OSError as err:
            result["errno"] = err.errno

    with mdevfs.fault(op="create", type="mtty-2", hang=True) as fault:
        t = threading.Thread(target=writer)
        t.start()
        # the rule fired: the create is held (a wait on the journal, no sleep)
        fired = mdevfs.wait(journal={"kind": "fault", "fault": fault.id}, since=mark, timeout=5)
        assert fired["met"] is True
        assert [d["state"] for d in mdevfs.state()["devices"]] == ["reserved"]
        assert t.is_alive()
        fault.release()
        t.join(5)
    assert result == {"ok": True}
    assert [d["state"] for d in mdevfs.state()["devices"]] == ["active"]
