"""COCO keypoints to LMDB, the record format and its reader, and the keypoint conventions."""
