import ResNeXt
import ResNeXtTrain

/// `bench`'s measurement: training steps on random data through the same data-parallel step as
/// `train`, each followed by a 1024^3 SGEMM on every process (`SGEMMProbe`), so that the step and
/// its ceiling see the same moments of a shared machine. With an `Alternation`, the steps take
/// its two settings in turn (`Alternation.isOn(step:)`).
public struct StepBenchmark {
    public let net: ResNeXt<Float>
    public let comm: Communicator
    public let batchSize, bnGroup, steps: Int
    public let seed: UInt64
    public let bucketMB: Double
    public let precision: GradientPrecision
    public let alternation: Alternation?
    /// Profile the timed steps by kind of work (`Profile`), and with `byLayer` by layer too.
    public let profile: Bool, byLayer: Bool

    public init(
        net: ResNeXt<Float>, comm: Communicator, batchSize: Int, bnGroup: Int, steps: Int, seed: UInt64,
        bucketMB: Double, precision: GradientPrecision = .fp32, alternation: Alternation?, profile: Bool, byLayer: Bool
    ) {
        self.precision = precision
        self.net = net; self.comm = comm; self.batchSize = batchSize; self.bnGroup = bnGroup; self.steps = steps
        self.seed = seed; self.bucketMB = bucketMB; self.alternation = alternation; self.profile = profile || byLayer
        self.byLayer = byLayer
    }

    /// The timed steps' seconds (after the warm-ups), the seconds each waited for communication,
    /// the SGEMM rate of each sample (the median over the processes), the setting of each step,
    /// and the buckets of the last step.
    public struct Timings {
        public var steps: [Double] = [], communication: [Double] = [], sgemm: [Double] = [], on: [Bool] = []
        public var buckets = 0
        /// Each convolution layer's seconds within the timed steps, by name (when profiling).
        public var layerSeconds: [String: Double] = [:]
        public var warmUps = 1
    }

    public func run() -> Timings {
        let perRank = batchSize / comm.size
        let tuned = net.convolutionInputs.map(\.conv.path)  // --alternate tuned's "on"
        var rng = SplitMix64(seed: seed &+ 1 &+ UInt64(comm.rank))
        let images = (0..<(perRank * 3 * 32 * 32)).map { _ in Float(rng.nextNormal()) }
        let labels = (0..<perRank).map { _ in Int32(rng.nextInt(below: 10)) }
        let sgd = SGD(learningRate: 0.01)
        let reducer = GradientReducer(
            comm: comm, store: net.store, bucketFloats: GradientReducer.floats(mebibytes: bucketMB), precision: precision)
        let probe = SGEMMProbe()
        var timings = Timings()
        timings.warmUps = alternation == nil ? 1 : 2
        images.withUnsafeBufferPointer { img in
            labels.withUnsafeBufferPointer { lab in
                for i in 0..<(timings.warmUps + (alternation == nil ? steps : 2 * steps)) {
                    let on = Alternation.isOn(step: i)
                    alternation?.set(on, on: net, tuned: tuned)
                    if i == timings.warmUps {
                        Profile.reset()
                        Profile.enabled = profile
                        Profile.byLayer = byLayer
                    }
                    comm.barrier()
                    let t0 = Profile.now()
                    let step = DataParallel.step(
                        net, images: img.baseAddress!, labels: lab.baseAddress!, n: perRank,
                        globalBatch: batchSize, bnGroup: bnGroup, optimizer: sgd, reducer: reducer,
                        timeAllreduce: true)
                    let t = Profile.now() - t0
                    if i >= timings.warmUps {
                        timings.steps.append(t)
                        timings.communication.append(step.allreduceSeconds)
                        timings.on.append(on)
                        probe.sample()
                    }
                }
            }
        }
        Profile.enabled = false
        Profile.byLayer = false
        timings.layerSeconds = Profile.layerSeconds
        comm.barrier()
        for _ in 0..<SGEMMProbe.samplesAfter { probe.sample() }
        // every process's samples, rank by rank; each sample the median over the processes
        let count = probe.samples.count
        var all = [Double](repeating: 0, count: comm.size * count)
        for (j, rate) in probe.samples.enumerated() { all[comm.rank * count + j] = rate }
        comm.allreduceSum(&all)
        timings.sgemm = (0..<count).map { j in (0..<comm.size).map { all[$0 * count + j] }.sorted()[comm.size / 2] }
        timings.buckets = reducer.buckets
        return timings
    }
}

/// The median of a non-empty array.
func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

extension StepBenchmark.Timings {
    public var medianStep: Double { median(steps) }
    public var medianCommunication: Double { median(communication) }
    public var medianSGEMM: Double { median(sgemm) }

    /// Each setting's steps (off, on) of an alternating run.
    public var bySetting: (off: [Double], on: [Double]) {
        (zip(steps, on).filter { !$0.1 }.map(\.0).sorted(), zip(steps, on).filter { $0.1 }.map(\.0).sorted())
    }

    /// on/off of each adjacent pair of timed steps (one of each): they follow the machine's drift
    /// less than the ratio of the two medians does.
    public var pairRatios: [Double] {
        stride(from: 0, to: steps.count - 1, by: 2).map { j in on[j] ? steps[j] / steps[j + 1] : steps[j + 1] / steps[j] }.sorted()
    }

    /// Each timed step's rate per process over the SGEMM timed right after it, sorted.
    public func adjacentShares(gigaflopsPerProcessStep: Double) -> [Double] {
        zip(steps, sgemm).map { gigaflopsPerProcessStep / $0 / $1 }.sorted()
    }
}
