"""The wheelhouse's choice of pins and wheels (no network: the download itself is not run)."""

import pytest

from tests.bench._load import BENCH, load_bench

wheelhouse = load_bench("wheelhouse")


def test_lock_without_host_packages():
    lock = "aiohttp==3.14.5\n# a comment\n\ndeepspeed==0.19.8\ntorch==2.13.0\ntriton==3.9.0\n"
    lock += (
        "nvidia-cudnn-cu12==9.1.0.70\nNVIDIA_nccl_cu12==2.21.5\ncuda-bindings==12.9.0\nPytorch_Triton==3.0\n"
    )
    pins = wheelhouse.parse_lock(lock)
    assert wheelhouse.gpu_host_pins(pins) == ["aiohttp==3.14.5", "deepspeed==0.19.8"]


def test_the_real_lock_keeps_deepspeed_and_drops_torch():
    pins = wheelhouse.parse_lock((BENCH.parent / "requirements.lock").read_text())
    reqs = wheelhouse.gpu_host_pins(pins)
    names = {r.split("==")[0].lower() for r in reqs}
    assert "deepspeed" in names and "numpy" in names
    assert not names & {"torch", "triton"} and not any(n.startswith("nvidia") for n in names)
    assert len(reqs) == len(pins) - 2


@pytest.mark.parametrize("line", ["torch>=2", "numpy==2.0; python_version<'3.12'", "==1.0"])
def test_a_line_that_is_not_a_pin_names_the_file_and_line(line):
    with pytest.raises(ValueError, match=r"requirements.lock:2: .*name==version"):
        wheelhouse.parse_lock(f"aiohttp==3.14.5\n{line}\n")


def test_install_list_leaves_out_the_host_torch_and_its_requirements():
    files = [
        "wheelhouse/deepspeed-0.19.8-py3-none-any.whl",
        "wheelhouse/sympy-1.14.0-py3-none-any.whl",
        "wheelhouse/numpy-2.3.1-cp311-cp311-manylinux_2_28_x86_64.whl",
        "wheelhouse/torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl",
        "wheelhouse/nvidia_nccl_cu12-2.21.5-py3-none-manylinux2014_x86_64.whl",
        "wheelhouse/typing_extensions-4.14.0-py3-none-any.whl",
    ]
    chosen = wheelhouse.wheels_to_install(files, {"sympy", "typing-extensions"})
    assert chosen == [files[0], files[2]]
