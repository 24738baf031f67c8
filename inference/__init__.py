"""Prediction, joint grouping, COCO evaluation, pictures and speed benchmarks.

Caffe is imported only for the caffe backend; everything else runs in a plain Python
environment with numpy, OpenCV (<5) and pycocotools.
"""
