"""speechllm: an ESPnet-style recipe toolkit for LLM-based speech recognition.

Dependencies are declared by name here and pinned in one place, ``tools/constraints.txt`` (the lock that
``tools/install.sh`` and ``.ci/run`` install with). A line's tag (``# core``, ``# test``, ``# demo``, ``# av``) says where it
belongs; the test extra includes demo and av. The names carry no upper bounds here, so the package also installs beside a newer torch (GPU clusters).
"""
from pathlib import Path

from setuptools import find_packages, setup

LOCK = Path(__file__).parent / "tools" / "constraints.txt"


def requirements(tag: str) -> list:
    names = []
    for line in LOCK.read_text().splitlines():
        spec, _, comment = line.partition("#")
        if spec.strip() and comment.strip() == tag:
            names.append(spec.split("==")[0].strip())
    return names


setup(
    name="speechllm",
    version="0.1.0",
    description="ESPnet-style recipes for LLM-based speech recognition (speech LLMs, LLM fusion, audio-visual)",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["speechllm", "speechllm.*"]),
    install_requires=requirements("core"),
    extras_require={"demo": requirements("demo"), "av": requirements("av"),
                    "test": requirements("test") + requirements("demo") + requirements("av")},
    entry_points={"console_scripts": ["speechllm-transcribe=speechllm.bin.transcribe:main"]},
    license="Apache-2.0",
)
