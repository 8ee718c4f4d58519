"""deepscope: look inside a PyTorch network while it trains, in its own TensorBoard tab.

Installing the plugin alone (to view logs) pulls no PyTorch; the writer needs
`torch`, which the `torch` extra names. Install the pinned CPU build first
where an unpinned one would pull a CUDA build (see the README).
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = (HERE / "deepscope" / "__init__.py").read_text().split('__version__ = "')[1].split('"')[0]

setup(
    name="deepscope",
    version=VERSION,
    description="Look inside a PyTorch network while it trains: spectra, update ratios, "
    "channel correlations and saliency in a TensorBoard tab",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["deepscope", "deepscope.*"]),
    package_data={
        "deepscope.proto": ["*.proto"],
        "deepscope.tb_plugin": ["static/*"],
    },
    include_package_data=True,
    install_requires=[
        "tensorboard>=2.21,<3",
        "protobuf>=6.31.1,<8",
        "numpy>=1.24",
        "werkzeug>=2",
        "scipy>=1.10",
    ],
    extras_require={
        # The writer. numba compiles the lasso path walk of compare()'s regression
        # (deepscope.analysis.lasso_path); the viewer needs neither.
        "torch": ["torch>=2.1", "numba>=0.60"],
        "demo": ["torch>=2.1", "numba>=0.60", "scikit-learn>=1.3", "tqdm>=4.60"],
        # Hugging Face models built from their configs in the tests (no download);
        # transformers does not require torch, so it never upgrades the pinned one.
        "hf": ["transformers>=4.40"],
        # deepscope.integrations: callbacks for PyTorch Lightning and the Hugging Face
        # Trainer. lightning and accelerate need torch (any 2.x the writer runs on), which
        # the installed build satisfies: installed with the pinned build named again
        # (as the Makefile does), pip leaves it in place.
        "lightning": ["lightning>=2.2"],
        "transformers": ["transformers>=4.40", "accelerate>=0.26"],
        "test": [
            "pytest>=8",
            "pytest-timeout>=2",
            "playwright>=1.45",
            "ruff>=0.6",
        ],
    },
    entry_points={
        "tensorboard_plugins": ["deepscope = deepscope.tb_plugin.loader:DeepscopeLoader"],
        "console_scripts": ["deepscope = deepscope.cli:main"],
    },
    zip_safe=False,
    classifiers=[
        "Framework :: TensorBoard",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
