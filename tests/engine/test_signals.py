"""Clean stopping on a real SIGTERM / SIGINT."""

from __future__ import annotations

import os
import signal

import pytest

from dinomed.engine import StopRequest


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_the_first_signal_asks_to_stop_and_the_second_aborts(signum: int, code: int) -> None:
    before = signal.getsignal(signum)
    with StopRequest().installed() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signum)
        assert stop.requested and stop.exit_code == code
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signum)
    assert signal.getsignal(signum) is before
