"""skops is imported without PyTorch or pytest, and still trusts scikit-learn's estimators."""

import subprocess
import sys

PROBE = """
import sys
import sklearn.base
from ensemblex.members.skops_io import skops_io
skops_io()
from skops.io._trusted_types import SKLEARN_ESTIMATOR_TYPE_NAMES as names
print('torch' in sys.modules, 'pytest' in sys.modules, len(names),
      'sklearn.neural_network._multilayer_perceptron.MLPClassifier' in names,
      sys.modules.get('torch', 0) is None, sys.modules.get('pytest', 0) is None)
from sklearn.utils._testing import skip_if_32bit  # defined only with pytest: imports again
"""


def test_skops_imports_without_torch_or_pytest():
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout.split()
    torch, pytest_loaded, n, mlp, torch_none, pytest_none = out
    assert (torch, pytest_loaded) == ("False", "False")
    assert int(n) > 150 and mlp == "True"  # scikit-learn's estimators are all trusted
    assert (torch_none, pytest_none) == ("False", "False")  # the blocks are lifted after
