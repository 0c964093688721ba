"""int8 quantization: calibration over real images, quant tables, weights, quality reports.

The flow (``mobile_engine.compile(model, quantize="int8", calibration=feeds)``)::

    optimised float IR --mobile_engine/calibration.py--> QuantTable (JSON: table.py)
        per-channel equalization factors of the instance-norm outputs (equalize.py), then
        per-tensor ranges of the equalized float plan's activations (observers.py)
    float IR + QuantTable --passes/quantize_int8.py--> int8 IR (weights.py: int8 per channel)
    int8 IR --planning (families/qconv.py, qelementwise.py)--> plan with qu8 kernels
    report.py: per-layer SQNR and PSNR of the int8 plan against the float plan (the runs and
        --min-psnr: mobile_engine/quality.py)

This package holds the math and the observers; the runs of float and int8 plans that calibrate
and evaluate are the compiler's (mobile_engine/calibration.py, quality.py), so no import cycle.
"""
