"""An MLP classifier on real handwritten digits (scikit-learn's 8x8 digits), with a learning curve.

    python examples/mlp_digits.py [--epochs 60] [--backend numpy|cupy] [--out runs]

64-256-256-10 with ReLU and dropout, Adam, early stopping on validation accuracy (best weights
restored), then the test accuracy of the held-out split. Writes runs/mlp_digits.png.
"""
import argparse

import minireg as mr
from minireg import nn
from minireg.data import DataLoader, TensorDataset, train_val_split
from minireg.datasets import load_digits
from minireg.losses import cross_entropy
from minireg.metrics import accuracy
from minireg.optim import Adam
from minireg.plots import plot_history
from minireg.training import EarlyStopping, Trainer

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=60)
parser.add_argument("--backend", default="numpy")
parser.add_argument("--out", default="runs")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--no-progress", action="store_true")
args = parser.parse_args()

mr.set_backend(args.backend)
mr.manual_seed(args.seed)
(x_train, y_train), (x_test, y_test) = load_digits()
(x_fit, y_fit), (x_val, y_val) = train_val_split(x_train, y_train, val_fraction=0.15, seed=args.seed, stratify=y_train)

model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Dropout(0.2),
                      nn.Linear(256, 256), nn.ReLU(), nn.Dropout(0.2),
                      nn.Linear(256, 10))
print(model)
trainer = Trainer(model, Adam(model.parameters(), lr=1e-3), cross_entropy, metrics={"accuracy": accuracy},
                  callbacks=[EarlyStopping("val_accuracy", patience=15)], progress=not args.no_progress)
history = trainer.fit(DataLoader(TensorDataset(x_fit, y_fit), batch_size=64, shuffle=True), args.epochs,
                      val_loader=DataLoader(TensorDataset(x_val, y_val), batch_size=512))
test = trainer.evaluate(DataLoader(TensorDataset(x_test, y_test), batch_size=512))
print(f"test accuracy: {test['accuracy']:.4f}  (test loss {test['loss']:.4f}, {len(y_test)} images)")
print("learning curve:", plot_history(history, f"{args.out}/mlp_digits.png", title="MLP on digits"))
