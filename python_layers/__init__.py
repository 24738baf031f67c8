"""Caffe Python layers for training, and the pure-numpy label maths they use.

Modules here that import caffe are only imported by Caffe itself (python_param); the label and
augmentation maths import numpy and OpenCV only, so inference can reuse them without Caffe.
"""
