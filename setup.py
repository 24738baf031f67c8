"""MLN reproduction toolkit: Caffe nets, COCO data preparation, training layers and inference.

Inside the Caffe environment (scripts/caffe-env) the repository is already on PYTHONPATH; this
file is for installing the packages elsewhere, e.g. the deploy environment that runs inference
through OpenCV's DNN module without Caffe:  pip install -e .[deploy]
"""
from setuptools import find_packages, setup

setup(
    name="mln-pose",
    version="0.1.0",
    description="Reproduce MLN (Multi-level Network for multi-person pose estimation) in Caffe",
    packages=find_packages(include=["conventions", "generators", "data_prep", "python_layers",
                                    "inference"]),
    python_requires=">=3.9",
    install_requires=["numpy"],
    extras_require={
        # OpenCV 5 has no Caffe importer; 4.10+ has the fast convolution kernels.
        "deploy": ["opencv-python-headless>=4.10,<5", "pycocotools", "tqdm",
                   "protobuf",    # inference/caffe_format.py reads Caffe files without Caffe
                   # inference/export_onnx.py and onnx_backends.py: the ONNX export, its two
                   # runtimes, and int8 quantisation (onnxruntime.quantization needs onnx)
                   "onnx>=1.14", "onnxruntime>=1.17", "openvino>=2024.0"],
        "test": ["pytest", "hypothesis"],
    },
)
