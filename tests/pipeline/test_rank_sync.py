"""RankSync with 2 gloo ranks (started as torchrun would: RANK, WORLD_SIZE, MASTER_* in the
environment): rank 0's results and failures reach every rank; checks agree across ranks."""

import json
import sys

import pytest

from deepshrink.errors import UserError
from deepshrink.pipeline.rank_sync import RankSync

# Each case prints one JSON line per rank: what the call returned or raised there.
SCRIPT = r"""
import json, sys
from deepshrink.errors import UserError
from deepshrink.pipeline.rank_sync import RankSync

ranks = RankSync.join("cpu")
ran = []

def outcome(call):
    try:
        return {"value": call()}
    except UserError as exc:
        return {"raised": "UserError", "message": str(exc)}
    except Exception as exc:
        return {"raised": type(exc).__name__, "message": str(exc)}

def work():
    ran.append(ranks.rank)
    return {"from": ranks.rank, "pair": (1, 2), "text": "é" * 3000}

def fail_user():
    raise UserError(f"disk full on rank {ranks.rank}")

def fail_bug():
    raise ValueError("a bug on rank 0")

def check_rank_1_only():
    if ranks.rank == 1:
        raise UserError("no data dir here")

def check_everywhere():
    raise UserError(f"bad on rank {ranks.rank}")

results = {
    "result": outcome(lambda: ranks.on_main(work)),
    "user_error": outcome(lambda: ranks.on_main(fail_user)),
    "bug": outcome(lambda: ranks.on_main(fail_bug)),
    "agree_ok": outcome(lambda: ranks.agree(lambda: None)),
    "agree_rank_1": outcome(lambda: ranks.agree(check_rank_1_only)),
    "agree_all": outcome(lambda: ranks.agree(check_everywhere)),
    "still_in_step": outcome(lambda: ranks.on_main(lambda: "last")),
}
results["ran_on"] = ran
print(json.dumps({"rank": ranks.rank, "world": ranks.world_size, **results}))
"""


def test_two_ranks_share_rank_0s_results_and_failures(spawn_ranks):
    procs = spawn_ranks([sys.executable, "-c", SCRIPT])
    assert [p.returncode for p in procs] == [0, 0], [p.stderr[-2000:] for p in procs]
    main, other = (json.loads(p.stdout.strip().splitlines()[-1]) for p in procs)
    assert (main["rank"], other["rank"], main["world"]) == (0, 1, 2)
    sent = {"from": 0, "pair": [1, 2], "text": "é" * 3000}  # JSON data, the same on both ranks
    assert main["result"] == other["result"] == {"value": sent}
    assert main["ran_on"] == [0] and other["ran_on"] == []  # the work ran on rank 0 only
    # rank 0's user error is every rank's user error (so every rank exits 2), with rank 0's message
    assert main["user_error"] == other["user_error"] == {"raised": "UserError", "message": "disk full on rank 0"}
    # a bug on rank 0 raises there as is, and ends the waiting ranks instead of leaving them hanging
    assert main["bug"] == {"raised": "ValueError", "message": "a bug on rank 0"}
    assert other["bug"] == {"raised": "RankFailed", "message": "rank 0 failed: ValueError: a bug on rank 0"}
    assert main["agree_ok"] == other["agree_ok"] == {"value": None}
    # a check failing on one rank fails on all, naming the rank
    assert main["agree_rank_1"] == other["agree_rank_1"] == {"raised": "UserError",
                                                             "message": "rank 1: no data dir here"}
    assert main["agree_all"] == other["agree_all"] == {"raised": "UserError", "message": "bad on rank 0"}
    assert main["still_in_step"] == other["still_in_step"] == {"value": "last"}  # no collective was left behind


def test_a_single_process_runs_the_work_itself():
    ranks = RankSync()
    assert (ranks.rank, ranks.world_size, ranks.is_main, ranks.active) == (0, 1, True, False)
    assert ranks.on_main(lambda: {"t": (1, 2)}) == {"t": [1, 2]}  # as JSON gives it back, like under torchrun
    with pytest.raises(UserError, match="^nope$"):
        ranks.on_main(lambda: (_ for _ in ()).throw(UserError("nope")))
    with pytest.raises(UserError, match="^bad$"):
        ranks.agree(lambda: (_ for _ in ()).throw(UserError("bad")))
    assert ranks.agree(lambda: None) is None
