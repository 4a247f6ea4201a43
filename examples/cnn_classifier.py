"""A CNN classifier on real images: scikit-learn's 8x8 digits or Fashion-MNIST (28x28, Debian package).

    python examples/cnn_classifier.py --data digits            # ~1 minute on 2 CPU cores
    python examples/cnn_classifier.py --data fashion-mnist     # 70,000 images: several minutes per epoch on CPU

conv(32, 3x3) - batch norm - ReLU - max pool - conv(64, 3x3) - batch norm - ReLU - max pool - dense 128
- dropout - dense 10, trained with Adam and early stopping on validation accuracy (best weights
restored); prints the test accuracy and writes runs/cnn_<data>.png.
"""
import argparse

import minireg as mr
from minireg import nn
from minireg.data import DataLoader, TensorDataset, train_val_split
from minireg.datasets import load_digits, load_fashion_mnist
from minireg.losses import cross_entropy
from minireg.metrics import accuracy
from minireg.optim import Adam
from minireg.plots import plot_history
from minireg.training import EarlyStopping, Trainer

DATA = {"digits": (load_digits, 8, 40, 32), "fashion-mnist": (load_fashion_mnist, 28, 6, 64)}

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", choices=sorted(DATA), default="digits")
parser.add_argument("--epochs", type=int, help="default: 40 for digits, 6 for fashion-mnist")
parser.add_argument("--backend", default=None, help="numpy or cupy (default: $MINIREG_BACKEND, else numpy)")
parser.add_argument("--out", default="runs")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--no-progress", action="store_true", help="one line per epoch instead of a progress bar")
args = parser.parse_args()

loader, size, default_epochs, batch_size = DATA[args.data]
if args.backend is not None:
    mr.set_backend(args.backend)
mr.manual_seed(args.seed)
(x_train, y_train), (x_test, y_test) = loader(flatten=False)
(x_fit, y_fit), (x_val, y_val) = train_val_split(x_train, y_train, val_fraction=0.1, seed=args.seed, stratify=y_train)

model = nn.Sequential(
    nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(64 * (size // 4) ** 2, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10))
print(model)
early_stopping = EarlyStopping("val_accuracy", patience=8)
trainer = Trainer(model, Adam(model.parameters(), lr=1e-3), cross_entropy, metrics={"accuracy": accuracy},
                  callbacks=[early_stopping], verbose=2 if args.no_progress else 1)
history = trainer.fit(DataLoader(TensorDataset(x_fit, y_fit), batch_size=batch_size, shuffle=True),
                      args.epochs or default_epochs, val_loader=DataLoader(TensorDataset(x_val, y_val), batch_size=500))
test = trainer.evaluate(DataLoader(TensorDataset(x_test, y_test), batch_size=500))
print(f"test accuracy: {test['accuracy']:.4f}  (test loss {test['loss']:.4f}, {len(y_test)} images)")
print("learning curve:", plot_history(history, f"{args.out}/cnn_{args.data.replace('-', '_')}.png",
                                      title=f"CNN on {args.data}", best_epoch=early_stopping.best_epoch))
