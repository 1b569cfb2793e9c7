import Foundation
import ResNeXt
import ResNeXtTrain

/// What `bench --json` prints: one object per run, keys in snake case, figures rounded as the
/// text prints them.
public struct BenchReport: Encodable {
    public var model: String
    public var processes, batch, perProcessBatch, bnGroup, threads: Int
    public var blasCore: String
    public var steps: Int
    public var imagesPerS, msPerStep, allreduceMs, bucketMb: Double
    public var buckets: Int
    public var simulatedGbps: Double?
    public var gflops, sgemmGflopsPerProcess, stepShareOfSgemm: Double
    public var sgemmSamples: Int
    public var sgemmMin, sgemmMax, stepShareOfAdjacentSgemm, peakMibPerProcess: Double
    /// What the gradients crossed the network as (--grad-dtype), and their MiB per step.
    public var gradDtype = GradientPrecision.fp32, gradientMib = 0.0
    /// With --path: every convolution's path (`ResNeXt.convolutionPaths`).
    public var paths: String? = nil
    /// With --tune-convolutions (or --alternate tuned).
    public var tunedPaths: String? = nil, tuningS: Double? = nil
    /// With --alternate.
    public var alternate: String? = nil, msPerStepOff: Double? = nil, msPerStepOn: Double? = nil, onOffPairMedian: Double? = nil

    public init(
        model: String, processes: Int, batch: Int, perProcessBatch: Int, bnGroup: Int, threads: Int, blasCore: String,
        steps: Int, imagesPerS: Double, msPerStep: Double, allreduceMs: Double, bucketMb: Double, buckets: Int,
        simulatedGbps: Double?, gflops: Double, sgemmGflopsPerProcess: Double, stepShareOfSgemm: Double,
        sgemmSamples: Int, sgemmMin: Double, sgemmMax: Double, stepShareOfAdjacentSgemm: Double,
        peakMibPerProcess: Double
    ) {
        self.model = model; self.processes = processes; self.batch = batch; self.perProcessBatch = perProcessBatch
        self.bnGroup = bnGroup; self.threads = threads; self.blasCore = blasCore; self.steps = steps
        self.imagesPerS = rounded(imagesPerS, 2); self.msPerStep = rounded(msPerStep, 1); self.allreduceMs = rounded(allreduceMs, 2)
        self.bucketMb = bucketMb; self.buckets = buckets; self.simulatedGbps = simulatedGbps; self.gflops = rounded(gflops, 1)
        self.sgemmGflopsPerProcess = rounded(sgemmGflopsPerProcess, 1); self.stepShareOfSgemm = rounded(stepShareOfSgemm, 3)
        self.sgemmSamples = sgemmSamples; self.sgemmMin = rounded(sgemmMin, 1); self.sgemmMax = rounded(sgemmMax, 1)
        self.stepShareOfAdjacentSgemm = rounded(stepShareOfAdjacentSgemm, 3); self.peakMibPerProcess = rounded(peakMibPerProcess, 0)
    }

    public mutating func addGradients(_ dtype: GradientPrecision, mebibytes: Double) {
        gradDtype = dtype; gradientMib = rounded(mebibytes, 2)
    }

    public mutating func addTuning(paths: String, seconds: Double) {
        tunedPaths = paths; tuningS = rounded(seconds, 1)
    }

    public mutating func addAlternation(_ name: String, off: Double, on: Double, pairMedian: Double) {
        alternate = name; msPerStepOff = rounded(off * 1000, 1); msPerStepOn = rounded(on * 1000, 1)
        onOffPairMedian = rounded(pairMedian, 3)
    }

    /// One line of JSON.
    public func json() throws -> String { try snakeCaseJSON(self) }
}

/// x to `digits` decimals (the JSON prints the shortest text that reads back as that double).
func rounded(_ x: Double, _ digits: Int) -> Double {
    let scale = pow(10, Double(digits))
    return (x * scale).rounded() / scale
}
