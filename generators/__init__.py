"""Caffe network generators (pycaffe NetSpec) for MLN and the OpenPose baseline."""
