"""Trial: a Keras 3 RGB model built with plain keras, trained briefly on the shapes folder."""
import sys

import keras
from keras import layers

out = sys.argv[1]
keras.utils.set_random_seed(1)
train = keras.utils.image_dataset_from_directory("shapes/train", image_size=(32, 32), batch_size=32, seed=1)
train = train.map(lambda x, y: (x / 255.0, y))
inp = keras.Input((32, 32, 3), name="pixels")
x = layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem_conv")(inp)
x = layers.BatchNormalization(name="stem_bn")(x)
x = layers.ReLU(name="stem_relu")(x)
y = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
y = layers.ReLU(6.0, name="dw_relu6")(y)
y = layers.Conv2D(16, 1, name="pw")(y)
x = layers.Add(name="skip_add")([x, y])
x = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="down_conv")(x)
x = layers.GlobalAveragePooling2D(name="gap")(x)
out_ = layers.Dense(4, activation="softmax", name="classifier")(x)
m = keras.Model(inp, out_, name="trial_net")
m.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
m.fit(train, epochs=int(sys.argv[2]) if len(sys.argv) > 2 else 4, verbose=2)
m.save(out)
print("saved", out, keras.__version__)
