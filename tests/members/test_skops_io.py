"""skops is imported without PyTorch or pytest, and still trusts scikit-learn's estimators."""

import json
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


NAMES = """
import json, sys
import sklearn.base, scipy.special
if sys.argv[1] == "ours":
    from ensemblex.members.skops_io import skops_io
    skops_io()
else:
    sys.modules["torch"] = sys.modules["pytest"] = None  # as ours does
    import skops.io
import skops.io._trusted_types as trusted
print(json.dumps({k: getattr(trusted, k) for k in dir(trusted) if k.endswith("_NAMES")}))
"""


def test_skops_trusts_the_same_types_through_the_faster_module_search():
    def names(how):
        out = subprocess.run(
            [sys.executable, "-c", NAMES, how], capture_output=True, text=True, check=True
        ).stdout
        return json.loads(out)

    ours, plain = names("ours"), names("plain")
    assert ours == plain
    assert len(ours["SCIPY_UFUNC_TYPE_NAMES"]) > 100  # the ufuncs searched for, all found
    assert not any(n.startswith("__main__") for n in ours["SCIPY_UFUNC_TYPE_NAMES"])
