"""`python bench/bird_render.py` (vppagent.bgp.bench): a bad argument is one line, exit 2."""

from __future__ import annotations

import pytest

from vppagent.bgp.bench import main


@pytest.mark.parametrize("argv", [["--repeat", "0", "mesh500"], ["--repeat", "-3"], ["nosuch"]])
def test_bad_arguments_are_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1, err
