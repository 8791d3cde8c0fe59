"""Suite-wide fixtures: a private token/peak cache, and a small corpus for training runs."""

from __future__ import annotations

import os
import random

import pytest

# Every compile in this session and in the processes it starts uses cheaper XLA:CPU code generation (about half the
# compile time, which dominates these tiny models); in-process and subprocess runs still compare like with like.
os.environ["SCALELAB_FAST_COMPILE"] = "1"

WORDS = ("the king queen love war peace night day sword crown heart blood fool ghost storm sea fair foul sweet "
         "death life time word lord lady forest island letter ring").split()


def pytest_collection_modifyitems(config, items):
    """End-to-end tests (marked slow) run last, so a broken unit shows up in the first minutes."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is not None)


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Keep the tests' token caches and measured CPU peak out of the user's ~/.cache."""
    root = tmp_path_factory.mktemp("scalelab-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("SCALELAB_CACHE", str(root))
    (root / "cpu_peak.json").write_text('{"peak": 1e11, "jax": 1e11, "numpy": 1e11}')  # runs log MFU; no re-measure
    yield root
    mp.undo()


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> str:
    """A ~40 KB directory of 60 short documents of random words: fast to tokenise, enough for many batches."""
    rng = random.Random(0)
    root = tmp_path_factory.mktemp("corpus")
    for i in range(60):
        lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10))) + "."
                 for _ in range(rng.randint(5, 15))]
        (root / f"doc{i:02d}.txt").write_text("\n".join(lines) + "\n")
    return str(root)


@pytest.fixture(scope="module")
def default_compile():
    """The default XLA options for a module whose property depends on them: several optimizer steps in one compiled
    loop are bitwise one step per call only when both compile the way users' runs do. The compiled-step caches are
    emptied before and after, so no executable crosses between the two settings."""
    from research.train import state, step

    def clear():
        for cache in (step._TRAIN_STEPS, step._EVAL_STEPS, state._INITS):
            cache.clear()

    clear()
    mp = pytest.MonkeyPatch()
    mp.delenv("SCALELAB_FAST_COMPILE")
    yield
    mp.undo()
    clear()
