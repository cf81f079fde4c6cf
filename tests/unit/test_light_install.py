"""The light install: without torch and transformers, every function of the ``train`` extra
says which extra to install, and the light modules still import.

The light install is simulated in a subprocess whose import system refuses the modules of the
``medvqa[train]`` extra, as an environment without them would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from medvqa._extras import TRAIN_EXTRA_MODULES, MissingExtraError, missing_train_module, needs_train_extra

_BLOCK = """
import importlib.abc, sys
class _NoTrainExtra(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "transformers", "peft", "bitsandbytes", "accelerate"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _NoTrainExtra())
for _m in [m for m in sys.modules if m.split(".")[0] in {"torch", "transformers", "peft"}]:
    del sys.modules[_m]
"""

# public call -> the name its error must give
_CALLS = {
    "medvqa.models.tiny_idefics2()": "models.tiny_idefics2()",
    "medvqa.models.save_tiny_idefics2()": "models.save_tiny_idefics2(str(tmp / 't'))",
    "medvqa.models.tiny_model()": "models.tiny_model('qwen2_vl')",
    "medvqa.models.save_tiny_model()": "models.save_tiny_model(str(tmp / 'm'))",
    "medvqa.models.load_model()": "models.load_model('tiny')",
    "medvqa.models.load_idefics2()": "models.load_idefics2('HuggingFaceM4/idefics2-8b')",
    "medvqa.models.bnb_config()": "models.bnb_config('nf4')",
    "medvqa.models.add_lora()": "models.add_lora(object())",
    "medvqa.models.load_adapter()": "models.load_adapter(object(), str(tmp))",
    "medvqa.models.lora_report()": "models.lora_report(object())",
    "medvqa.training.load_base_model()": "training.load_base_model(stage)",
    "medvqa.training.run_stage()": "training.run_stage(stage)",
    "medvqa.training.run_two_stage()": "training.run_two_stage(None, stage)",
    "medvqa.training.run_sweep()": "training.run_sweep(None, stage, output_dir=str(tmp / 's'), sizes=(0,))",
    "medvqa.training.load_trained_model()": "training.load_trained_model('tiny', None)",
    "medvqa.training.predict_and_score()": (
        "training.predict_and_score(None, None, data.load('vqa_rad', data.sample_root() / 'vqa_rad', split='test')[:2], "
        "output_dir=str(tmp / 'eval'), name='x')"
    ),
    "medvqa.pipeline.run_demo()": "pipeline.run_demo(pipeline.DemoConfig(output_dir=str(tmp / 'demo')))",
    "medvqa.judge.LocalJudge.complete()": "judge.LocalJudge(str(tmp)).complete([[{'role': 'user', 'content': 'x'}]])",
    "medvqa.judge.LocalJudge": "judge.LocalJudge('some/hub-model').revision",
}


def _run_light(code: str) -> str:
    script = _BLOCK + textwrap.dedent(code)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_every_train_function_names_the_extra(tmp_path: pytest.TempPathFactory) -> None:
    code = f"""
    import json, pathlib
    from medvqa import data, judge, models, pipeline, training
    tmp = pathlib.Path({str(tmp_path)!r})
    stage = training.paper_stage2(model="tiny", output_dir=str(tmp / "stage"))
    got = {{}}
    for label, call in {_CALLS!r}.items():
        try:
            eval(call)
        except Exception as exc:
            got[label] = [type(exc).__name__, isinstance(exc, ModuleNotFoundError), str(exc), bool(list(tmp.glob("demo/*")))]
        else:
            got[label] = None
    print(json.dumps(got))
    """
    got = json.loads(_run_light(code).strip().splitlines()[-1])
    for label, result in got.items():
        assert result is not None, f"{label} ran without the training extra"
        kind, is_import_error, message, _ = result
        assert kind == "MissingExtraError" and is_import_error, (label, kind, message)
        assert message.startswith(f"{label} needs '"), (label, message)
        assert "pip install 'medvqa[train]'" in message, message
    assert got["medvqa.pipeline.run_demo()"][3] is False, "run_demo wrote its folder before failing"
    assert not (tmp_path / "stage").exists(), "run_stage wrote its folder before failing"


def test_light_modules_import_and_configs_work_without_the_extra() -> None:
    code = """
    import medvqa, medvqa.training, medvqa.pipeline, medvqa.judge, medvqa.models
    from medvqa.training import paper_stage1, preset
    print(paper_stage1().learning_rate, preset("paper_stage2").name, medvqa.StageConfig.__name__)
    """
    assert _run_light(code).split() == ["1e-05", "stage2", "StageConfig"]


def test_cli_names_the_extra_without_torch(tmp_path: pytest.TempPathFactory) -> None:
    code = f"""
    from medvqa import cli
    code = cli.main(["demo", "--output", {str(tmp_path / "demo")!r}])
    print("exit", code)
    """
    script = _BLOCK + textwrap.dedent(code)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert "exit 1" in out.stdout, out.stderr
    err = out.stderr.strip().splitlines()[-1]
    assert err.startswith("medvqa: error: 'medvqa demo' needs '"), err
    assert err.endswith("pip install 'medvqa[train]'"), err


def test_decorator_passes_other_errors_through() -> None:
    @needs_train_extra
    def broken() -> None:
        import medvqa_no_such_module  # type: ignore[import-not-found]  # noqa: F401

    with pytest.raises(ModuleNotFoundError) as info:
        broken()
    assert not isinstance(info.value, MissingExtraError)
    assert missing_train_module(info.value) is None


def test_decorator_keeps_name_and_docstring() -> None:
    from medvqa.models import tiny_idefics2

    assert tiny_idefics2.__name__ == "tiny_idefics2"
    assert tiny_idefics2.__doc__ and "tiny" in tiny_idefics2.__doc__.lower()


def test_cli_and_functions_share_one_list_of_extra_modules() -> None:
    assert {"torch", "transformers", "peft", "bitsandbytes"} <= TRAIN_EXTRA_MODULES
    err = MissingExtraError.for_module("'medvqa train'", "peft")
    assert err.name == "peft"
    assert str(err) == (
        "'medvqa train' needs 'peft', part of the training extra: "
        "install torch for your machine, then pip install 'medvqa[train]'"
    )


def test_missing_extra_error_is_exported() -> None:
    import medvqa

    assert medvqa.MissingExtraError is MissingExtraError
    assert issubclass(MissingExtraError, medvqa.MedVQAError)
