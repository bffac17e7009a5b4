"""edgeocr: offline text reading (meters, counters, labels) on Raspberry Pi and other ARM boards."""

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent

DEVICE = [
    "ai-edge-litert==2.3.0",
    "numpy>=1.24",
    "opencv-python-headless>=4.8",
    "paho-mqtt>=2.0,<3",
    "tomli>=2; python_version < '3.11'",
]
TFLITE_FALLBACK = [
    "tflite-runtime==2.14.0",
    "numpy>=1.24,<2",
    "opencv-python-headless>=4.8,<5",
    "paho-mqtt>=2.0,<3",
    "tomli>=2; python_version < '3.11'",
]
CONVERT = [
    # torch==2.13.0 is installed first from the local CPU wheel (see README); onnx2tf pins the rest.
    "onnx2tf==1.29.24",
    "tensorflow==2.19.0",
    "tf-keras==2.19.0",
    "onnx==1.19.1",
    "onnxruntime==1.23.0",
    "onnxsim==0.4.36",
    "onnx-graphsurgeon==0.5.8",
    "ai-edge-litert==2.1.0",
    "sng4onnx",
    "numpy==1.26.4",
    "protobuf==4.25.5",
    "opencv-python-headless>=4.8,<4.11",
    "pillow>=10",
    "tqdm>=4.60",
]
TEST = ["pytest>=8", "pillow>=10", "hypothesis>=6.100"]

setup(
    name="edgeocr",
    version="0.1.0",
    description=__doc__,
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=["device", "device.models", "device.firmware_config", "convert"],
    package_dir={"device.models": "models", "device.firmware_config": "firmware_config"},
    package_data={
        "device.models": ["*.tflite", "*.json", "*.pt"],
        "device.firmware_config": ["*.toml", "*.txt", "samples/*.png", "samples/frames/*.png"],
    },
    install_requires=[],
    extras_require={
        "device": DEVICE,
        "tflite": TFLITE_FALLBACK,
        "pi": DEVICE + ["rpi-lgpio; platform_machine=='aarch64'"],
        "convert": CONVERT,
        "test": TEST,
    },
    entry_points={
        "console_scripts": [
            "edgeocr=device.cli:main",
            "edgeocr-convert=convert.cli:main",
        ]
    },
)
