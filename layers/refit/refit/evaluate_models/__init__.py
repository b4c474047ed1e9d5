"""EvaluateModels: the gate, challenger against champion."""
