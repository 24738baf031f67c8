"""Helpers of the tests that check that processes (data-layer workers) are gone."""


def alive(pid):
    """True while process `pid` exists and is not a zombie (read from /proc)."""
    try:
        with open("/proc/%d/stat" % pid) as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
