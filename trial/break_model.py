"""Trial: break full int8 on the trial model in a way break_int8.py does not: two output channels of the last conv
(down_conv) get a bias of 3000 (ReLU passes it on through the global pool), and the classifier nearly ignores them
(weights 1e-6, not zero), so the float outputs barely change while those channels set the int8 step of down_conv,
gap and the classifier's input."""
import sys

import keras

m = keras.models.load_model(sys.argv[1])
conv, dense = m.get_layer("down_conv"), m.get_layer("classifier")
k, b = conv.get_weights()
b[[3, 17]] = 3000.0
conv.set_weights([k, b])
w, c = dense.get_weights()
w[[3, 17], :] = 1e-6
dense.set_weights([w, c])
m.save(sys.argv[2])
print("saved", sys.argv[2])
