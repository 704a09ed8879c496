"""Every notebook runs top to bottom on a small sample lake built by the real jobs (generate, pipeline).

The notebooks share one kernel, so its Spark JVM starts (and warms up) once; each notebook starts from an empty
namespace (``%reset -f`` in its parameters cell), so one cannot lean on names another defined."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(scope="module")
def sample_conf(spark, redis_server, tmp_path_factory) -> Path:
    """A config pointing at a fresh lake under a temp folder, filled by generate + pipeline --full."""
    from jobs import run as runner
    from recsys.config import load_config

    tmp = tmp_path_factory.mktemp("nb")
    conf_dir = tmp / "conf"
    conf_dir.mkdir()
    shutil.copy(ROOT / "conf" / "base.yaml", conf_dir / "base.yaml")
    (conf_dir / "test.yaml").write_text(
        f"lake:\n  root: {tmp / 'lake'}\n  raw_root: {tmp / 'raw'}\n  models_root: {tmp / 'models'}\n"
        f"  checkpoint_dir: {tmp / 'ckpt'}\n  user_buckets: 4\n"
        "spark:\n  driver_memory: 2g\n  shuffle_partitions: 2\n  log_level: ERROR\n"
        f"redis:\n  url: {redis_server}\n"
        "als:\n  rank: 8\n  max_iter: 5\n"
    )
    conf_file = conf_dir / "test.yaml"
    cfg = load_config(conf_file, env={})
    jobs = runner.available_jobs()
    for name, argv in [
        ("generate", ["--users", "150", "--products", "60", "--events-per-user", "12", "--seed", "3"]),
        ("pipeline", ["--full"]),
    ]:
        args = runner.build_parser(name, jobs[name]).parse_args(argv)
        assert jobs[name].run(args, cfg, spark) == 0, f"{name} failed"
    return conf_file


@pytest.fixture(scope="module")
def kernel() -> Iterator[object]:
    """One python3 kernel for every notebook of the module, started in the project folder."""
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(ROOT))
    yield km
    km.shutdown_kernel(now=True)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(notebook: Path, sample_conf: Path, kernel) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit notebooks stripped"
    params = nb.cells[1]
    assert params.source.startswith("# Parameters"), "the second cell must be the parameters cell"
    overrides = {"PROJECT_DIR": repr(str(ROOT)), "CONF_FILE": repr(str(sample_conf))}
    if notebook.stem.startswith("02"):
        # The hybrid fits ALS, item-kNN and content itself, so evaluating them alone as well (the notebook's
        # default) only repeats the fits; one sweep variant reuses the hybrid's cached candidates.
        overrides.update({
            "PROTOCOL": repr("stratified"),
            "MODELS": repr(["popularity", "hybrid"]),
            "SWEEP": repr(["cf1-knn1-ct0.3-pop0.1"]),
        })
    params.source = "%reset -f\n" + params.source + "\n" + "\n".join(f"{k} = {v}" for k, v in overrides.items())
    NotebookClient(nb, km=kernel, timeout=600, resources={"metadata": {"path": str(ROOT)}}).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
