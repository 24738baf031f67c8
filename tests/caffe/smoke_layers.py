"""A minimal Caffe Python layer for the smoke tests: batches of a noiseless linear regression."""
import json

import caffe
import numpy as np

TRUE_WEIGHTS = np.array([1.0, -2.0, 0.5, 3.0], dtype=np.float32)


class LinearRegressionData(caffe.Layer):
    """Tops: x (N, 4) drawn from N(0, 1) and y = x . TRUE_WEIGHTS (N, 1)."""

    def setup(self, bottom, top):
        params = json.loads(self.param_str)
        self.batch_size = params["batch_size"]
        self.rng = np.random.RandomState(params["seed"])

    def reshape(self, bottom, top):
        top[0].reshape(self.batch_size, len(TRUE_WEIGHTS))
        top[1].reshape(self.batch_size, 1)

    def forward(self, bottom, top):
        x = self.rng.standard_normal((self.batch_size, len(TRUE_WEIGHTS))).astype(np.float32)
        top[0].data[...] = x
        top[1].data[...] = x.dot(TRUE_WEIGHTS)[:, None]

    def backward(self, top, propagate_down, bottom):
        pass
