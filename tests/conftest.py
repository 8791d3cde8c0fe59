"""Suite-wide fixtures: a private token/peak cache, and a small corpus for training runs."""

from __future__ import annotations

import random

import pytest

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
def fast_cpu_compile():
    """Compile this module's train and eval steps with cheaper CPU code generation (about 2x less compile time).

    For modules that compare runs made in this process with each other only (layouts against one device): both
    sides compile the same way. The compiled-step caches are emptied before and after, so no other module reuses an
    executable compiled with these options (a test comparing against a subprocess needs the default ones)."""
    from research.train import compile_cache, state, step
    from tests.model.harness import FAST_CPU_COMPILE

    def clear():
        for cache in (step._TRAIN_STEPS, step._EVAL_STEPS, state._INITS):
            cache.clear()

    clear()
    mp = pytest.MonkeyPatch()
    mp.setattr(compile_cache, "CPU_COMPILER_OPTIONS", compile_cache.CPU_COMPILER_OPTIONS | FAST_CPU_COMPILE)
    yield
    mp.undo()
    clear()
