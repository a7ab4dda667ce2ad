"""Loading a saved deep estimator is bounded by its file: a config that describes another
network than the tensors in the file is refused before that network is allocated."""

import json
import resource

import pytest
from safetensors import safe_open
from safetensors.torch import save_file
from sklearn.datasets import load_breast_cancer

from ensemblex.deep import DeepEnsembleClassifier


def _rewrite(path, edit):
    with safe_open(str(path), framework="pt") as fh:
        config = json.loads(fh.metadata()["config"])
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    edit(config)
    save_file(tensors, str(path), metadata={"config": json.dumps(config)})


def test_a_config_describing_a_huge_network_is_refused_without_building_it(tmp_path):
    X, y = load_breast_cancer(return_X_y=True)
    model = DeepEnsembleClassifier(n_members=2, hidden=(8,), max_epochs=2, n_threads=1)
    path = model.fit(X, y).save(tmp_path / "small.safetensors")
    assert path.stat().st_size < 10_000
    _rewrite(path, lambda c: c["params"].update(hidden=[8000, 8000], n_members=64))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match="tensors differ from the file's"):
        DeepEnsembleClassifier.load(path)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200  # the described network would take 16 GB


def test_damaged_files_and_foreign_configs_are_one_clear_error(tmp_path):
    X, y = load_breast_cancer(return_X_y=True)
    model = DeepEnsembleClassifier(n_members=2, hidden=(8,), max_epochs=2, n_threads=1)
    path = model.fit(X, y).save(tmp_path / "m.safetensors")
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="not a saved DeepEnsembleClassifier"):
        DeepEnsembleClassifier.load(path)
    path.write_bytes(good)
    _rewrite(path, lambda c: c.update(estimator="TabMClassifier"))
    with pytest.raises(ValueError, match="holds a 'TabMClassifier'"):
        DeepEnsembleClassifier.load(path)
    path.write_bytes(good)
    _rewrite(path, lambda c: c["params"].update(n_members="many"))
    with pytest.raises(ValueError, match="not a saved DeepEnsembleClassifier"):
        DeepEnsembleClassifier.load(path)
