"""The conventions every package shares, defined once: the COCO-18 keypoint and limb table
(keypoints), the image geometry and normalisation (geometry), what goes in and out of the nets
(net_contract) and how pictures draw people (drawing). numpy only (drawing also OpenCV), so data
preparation, the Caffe layers, the generators and the Caffe-free deploy environment all import
the same definitions.
conventions/README.md states each fact and where it comes from.
"""
