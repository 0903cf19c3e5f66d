import pytest
import torch

# Unit tests use tiny models: one thread is fastest and immune to a busy machine (see Profile.num_threads).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own cache and data directory and the default (quick) profile."""
    monkeypatch.setenv("PRUNING_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("PRUNING_DATA_DIR", raising=False)
    monkeypatch.delenv("PRUNING_PROFILE", raising=False)


@pytest.fixture(scope="module")
def loaders():
    """The quick profile's digits loaders (offline, bundled with scikit-learn), built once per test module."""
    from pruning_utils.data import get_loaders

    return get_loaders("quick")
