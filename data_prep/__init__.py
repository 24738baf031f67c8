"""COCO keypoints to LMDB: the packer, the record format and its reader, the synthetic dataset."""
