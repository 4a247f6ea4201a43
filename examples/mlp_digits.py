"""An MLP classifier on real handwritten digits (scikit-learn's 8x8 digits), with a learning curve.

    python examples/mlp_digits.py [--epochs 40] [--backend numpy|cupy] [--out runs]

64-256-256-10 with ReLU and dropout on standardized pixels, AdamW with a cosine learning-rate
schedule, a fixed budget of epochs on the 1437 training images; then the accuracy on the 360 held-out
test images. The test set is only monitored for the learning curve (runs/mlp_digits.png), never used
to choose anything. Test accuracy with the defaults: 97.5-97.8% over seeds 0-3.
"""
import argparse

import minireg as mr
from minireg import nn
from minireg.data import DataLoader, Standardizer, TensorDataset
from minireg.datasets import load_digits
from minireg.losses import cross_entropy
from minireg.metrics import accuracy
from minireg.optim import AdamW
from minireg.optim.lr_scheduler import CosineAnnealingLR
from minireg.plots import plot_history
from minireg.training import SchedulerStep, Trainer

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=40)
parser.add_argument("--backend", default=None, help="numpy or cupy (default: $MINIREG_BACKEND, else numpy)")
parser.add_argument("--out", default="runs")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--no-progress", action="store_true", help="one line per epoch instead of a progress bar")
args = parser.parse_args()

if args.backend is not None:
    mr.set_backend(args.backend)
mr.manual_seed(args.seed)
(x_train, y_train), (x_test, y_test) = load_digits()
scaler = Standardizer().fit(x_train)                      # statistics of the training images only
x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)

model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Dropout(0.2),
                      nn.Linear(256, 256), nn.ReLU(), nn.Dropout(0.2),
                      nn.Linear(256, 10))
print(model)
optimizer = AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
trainer = Trainer(model, optimizer, cross_entropy, metrics={"accuracy": accuracy},
                  callbacks=[SchedulerStep(CosineAnnealingLR(optimizer, args.epochs))], verbose=2 if args.no_progress else 1)
test_loader = DataLoader(TensorDataset(x_test, y_test), batch_size=512)
history = trainer.fit(DataLoader(TensorDataset(x_train, y_train), batch_size=64, shuffle=True), args.epochs,
                      val_loader=test_loader)
test = trainer.evaluate(test_loader)
print(f"test accuracy: {test['accuracy']:.4f}  (test loss {test['loss']:.4f}, {len(y_test)} images)")
print("learning curve:", plot_history(history, f"{args.out}/mlp_digits.png", title="MLP on digits",
                                      val_label="test (monitored only)"))
