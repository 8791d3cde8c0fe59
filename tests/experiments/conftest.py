import pytest


@pytest.fixture(scope="package", autouse=True)
def _compilation_cache(_private_cache):
    """`experiments run` turns on JAX's persistent compilation cache (under the session's private cache); put the
    previous settings back for the other packages."""
    import jax

    previous = jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs
    yield
    jax.config.update("jax_compilation_cache_dir", previous[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", previous[1])
