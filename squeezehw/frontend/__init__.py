"""Front end: a trained float network in, as squeezehw's network IR.

``ir`` (the layer list), ``family`` (the paper's metaparameters -> a network), ``importer`` (PyTorch
state dicts, torchvision layouts), ``onnx_import``, ``torch_models`` (torchvision-exact SqueezeNets),
``float_model`` (float32 inference of the IR: the reference the quantizer is judged by) and
``images`` (photographs in the ImageFolder layout -> uint8 pixels).
"""
