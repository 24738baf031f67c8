"""The Caffe training data layer (data_layer.py) and the numpy/OpenCV maths it uses: the batch
source (batch_source.py), augmentation (augment.py) and the heatmap and PAF labels (labels.py).

Only data_layer.py imports caffe, and only Caffe itself imports it (python_param); the label and
augmentation maths run without Caffe, so inference's oracle reuses them.
"""
