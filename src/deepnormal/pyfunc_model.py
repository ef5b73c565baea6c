"""The model-from-code file MLflow logs with the trained model (serving.log_model).

MLflow runs this file when it loads the model, instead of unpickling a Python object:
nothing in a logged model is a pickle (the checkpoint is read weights-only).
"""

import mlflow

from deepnormal.serving import DeepNormalPyfunc

mlflow.models.set_model(DeepNormalPyfunc())
