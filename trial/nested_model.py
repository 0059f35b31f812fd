"""Trial: a Keras 3 model with two nested Sequential blocks that reuse layer names (conv, bn, relu)."""
import sys

import keras
from keras import layers


def block(name, filters):
    return keras.Sequential([layers.Conv2D(filters, 3, padding="same", use_bias=False, name="conv"),
                             layers.BatchNormalization(name="bn"), layers.ReLU(name="relu")], name=name)


keras.utils.set_random_seed(2)
train = keras.utils.image_dataset_from_directory("shapes/train", image_size=(32, 32), batch_size=32, seed=1)
train = train.map(lambda x, y: (x / 255.0, y))
inp = keras.Input((32, 32, 3))
x = block("block_a", 16)(inp)
x = layers.MaxPooling2D(name="pool")(x)
x = block("block_b", 32)(x)
x = layers.GlobalAveragePooling2D(name="gap")(x)
out = layers.Dense(4, activation="softmax", name="head")(x)
m = keras.Model(inp, out)
m.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
m.fit(train, epochs=int(sys.argv[2]), verbose=2)
m.save(sys.argv[1])
