"""A runtime or exporter that is installed but fails to import says so, on the device and on the host."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hwlab_runner.backends import OnnxRuntimeBackend, TorchBackend

from hwlab.doctor import _runtime_findings
from hwlab.errors import BackendUnavailable
from hwlab.export import writers
from hwlab.inventory import LOCAL_DEFAULT
from hwlab.measure.runtimes import check_backend


class BrokenOrt(OnnxRuntimeBackend):
    """onnxruntime whose import fails the way a wheel built for another CPU does."""

    def module(self):  # type: ignore[no-untyped-def]
        raise ImportError("libonnxruntime.so: cannot open shared object file")


def test_the_runner_reports_a_broken_import_apart_from_an_absent_one() -> None:
    assert BrokenOrt().probe() == {
        "module": "onnxruntime",
        "version": None,
        "error": "ImportError: libonnxruntime.so: cannot open shared object file",
    }
    assert TorchBackend().probe()["version"]  # type: ignore[index]  # installed here, imports


def test_the_host_refuses_a_broken_runtime_with_its_error() -> None:
    facts = {"runtimes": {"onnxruntime": BrokenOrt().probe()}}
    with pytest.raises(BackendUnavailable, match="installed on device 'local' but fails to import: ImportError"):
        check_backend("onnxruntime", facts, LOCAL_DEFAULT)
    with pytest.raises(BackendUnavailable, match="onnxruntime is not installed on device 'local'"):
        check_backend("onnxruntime", {"runtimes": {"onnxruntime": None}}, LOCAL_DEFAULT)
    only_ort = replace(LOCAL_DEFAULT, runtimes=("onnxruntime",))
    (finding,) = _runtime_findings(only_ort, facts, runner=True)
    assert finding.level == "missing" and "fails to import" in finding.what and "--force-reinstall" in finding.fix


def test_a_broken_exporter_is_not_called_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shadow = tmp_path / "litert_torch"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('undefined symbol: _ZN10tensorflow')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "litert_torch", raising=False)
    with pytest.raises(BackendUnavailable, match="installed but fails to import .*undefined symbol") as err:
        writers._litert_torch()
    assert "--force-reinstall" in str(err.value)
