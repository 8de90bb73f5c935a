"""The pytest plugin (registered by the `pytest11` entry point: installing the package is enough).

Fixtures:
- ``mdevfs``: a fresh tree for the test, stopped after it. Its profile and options come from the
  marker ``@pytest.mark.mdevfs(profile="nvidia-t4", abi="6.1", backend=None)`` (default: samples).
- ``mdevfs_factory``: a function that starts trees (same keywords as the marker); all are stopped
  after the test.
"""

import pytest

import mdevfs as _mdevfs


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "mdevfs(profile=None, abi=None, backend=None): the options of the test's mdevfs tree "
        "(profile: a built-in name, a file or a dict)",
    )


@pytest.fixture
def mdevfs_factory():
    trees = []

    def make(**options):
        tree = _mdevfs.start(**options)
        trees.append(tree)
        return tree

    yield make
    errors = []
    for tree in reversed(trees):
        try:
            tree.stop()
        except Exception as err:  # stop the others all the same
            errors.append(err)
    if errors:
        raise errors[0]


@pytest.fixture
def mdevfs(request, mdevfs_factory):
    marker = request.node.get_closest_marker("mdevfs")
    options = dict(marker.kwargs) if marker else {}
    if marker and marker.args:
        options.setdefault("profile", marker.args[0])
    return mdevfs_factory(**options)
