import Foundation
import ResNeXt

/// Data-parallel training on CIFAR-10. Every process holds a full replica; the global batch of B
/// images is cut into P contiguous shards of B/P (rank r takes entries [r B/P, (r+1) B/P) of each
/// global batch), each shard into BN groups. Gradients are summed over ranks (each rank's loss is
/// already divided by B, so the sum is the global mean), BN batch statistics likewise, then every
/// rank takes the same SGD step. With P = 1 this is the single-process trainer.
public final class Trainer {
    public let settings: TrainSettings
    public let comm: Communicator
    let say: (String) -> Void
    let startupLines: [String]

    public private(set) var net: ResNeXt<Float>!

    /// `say` prints a line; it is called on rank 0 only. `startupLines` (the command's: which
    /// OpenBLAS kernels run and why) are printed once the run is set up.
    public init(settings: TrainSettings, comm: Communicator, startupLines: [String] = [], say: @escaping (String) -> Void) {
        self.settings = settings
        self.comm = comm
        self.startupLines = startupLines
        self.say = say
    }

    func log(_ line: String) { if comm.isRoot { say(line) } }

    /// What every rank has once set up.
    struct Setup {
        let data: CIFAR10
        let order: EpochOrder
        let perRank: Int
        let net: ResNeXt<Float>
        let step: Int
        /// The convolution paths a resumed checkpoint recorded (nil: it did not tune them).
        let paths: String?
        /// The epoch's running sums a mid-epoch checkpoint recorded.
        let sums: Checkpoint.EpochSums
    }

    /// Settings, data, model, initial state: on every rank, agreed (a failure anywhere stops all).
    func setUp() throws -> Setup {
        let s = settings
        let processes = comm.size
        try s.validate(processes: processes)
        setBLASThreads(s.threads)
        let data = try CIFAR10(directory: s.dataDir)
        guard data.test.count >= processes else {
            throw ResNeXtError(
                "\(s.dataDir)/\(CIFAR10.testFile): \(data.test.count) test images for \(processes) processes; every process needs at least one")
        }
        let order = EpochOrder(count: data.train.count, batchSize: s.batchSize, shuffle: s.shuffle, seed: s.seed)
        guard order.batchesPerEpoch >= 1 else {
            throw ResNeXtError("\(s.dataDir): \(data.train.count) training images is fewer than --batch-size \(s.batchSize)")
        }
        let perRank = s.batchSize / processes
        let net = try ResNeXt<Float>(s.model, maxBatch: perRank)
        var step = 0, paths: String? = nil, sums = Checkpoint.EpochSums()
        if let resume = s.resumePath {
            let (path, restored) = try Checkpoint.resume(resume, into: net, warn: { self.log($0) })
            (step, paths, sums) = (restored.step, restored.paths, restored.sums)
            log("resuming from \(path) at step \(step)")
        } else if let initPath = s.initPath {
            let file = try SafeTensorsFile(path: initPath)
            try net.loadStateDict(file)
            log("initial weights from \(initPath)")
        } else {
            net.initialize(seed: s.seed)
        }
        if comm.isRoot {
            try FileManager.default.createDirectory(atPath: s.outdir, withIntermediateDirectories: true)
            // what a killed run was writing when it died (`writeAtomically`'s temporaries)
            for name in (try? FileManager.default.contentsOfDirectory(atPath: s.outdir)) ?? [] where name.hasPrefix(".") && name.contains(".tmp-") {
                unlink(s.outdir + "/" + name)
            }
        }
        return Setup(data: data, order: order, perRank: perRank, net: net, step: step, paths: paths, sums: sums)
    }

    /// How a run ended: every step done, or stopped by a signal after its checkpoint
    /// (`StopSignal`; the command exits with `StopSignal.exitStatus`).
    public enum Outcome: Equatable {
        case finished
        case stopped(step: Int)
    }

    @discardableResult
    public func run() throws -> Outcome {
        StopSignal.install()
        let s = settings
        let rank = comm.rank, processes = comm.size
        let setup = try comm.agree { try setUp() }
        let (data, order, perRank, net) = (setup.data, setup.order, setup.perRank, setup.net)
        var step = setup.step
        self.net = net
        broadcastState(net)
        // a resumed run keeps the paths its checkpoint recorded (bit for bit the same steps)
        if let paths = setup.paths {
            log("convolution paths from the checkpoint: \(paths.isEmpty ? "the defaults" : paths)")
        } else if s.tuneConvolutions {
            let t0 = Profile.now()
            let choices = ConvolutionTuner.tune(net, n: perRank, seed: s.seed, agree: { comm.allreduceSum(&$0) })
            log(ConvolutionTuner.report(choices, processes: processes, seconds: Profile.now() - t0))
        }
        // then config.json and every checkpoint record the paths
        let tunedPaths = setup.paths != nil || s.tuneConvolutions
        for line in startupLines { log(line) }
        if !tunedPaths, let hint = untunedAVX512Hint { log(hint) }

        let stepsPerEpoch = order.batchesPerEpoch
        let schedule = LearningRateSchedule(
            kind: s.schedule, baseLR: s.baseLR, targetLR: s.targetLR, milestones: s.milestones,
            decay: s.lrDecay, warmupEpochs: s.warmupEpochs, epochs: s.epochs,
            stepsPerEpoch: stepsPerEpoch)
        let lastStep = min(s.epochs * stepsPerEpoch, s.maxSteps ?? Int.max)
        let metrics = comm.isRoot ? try MetricsLog(outdir: s.outdir, keepThroughEpoch: s.resumePath == nil ? 0 : step / stepsPerEpoch) : nil
        let board = (comm.isRoot && s.tensorboard) ? try TensorBoardWriter(directory: s.outdir + "/tb") : nil
        if comm.isRoot {
            try writeConfig(
                net: net, tunedPaths: tunedPaths, trainImages: data.train.count, testImages: data.test.count, stepsPerEpoch: stepsPerEpoch)
        }
        log("\(s.model): \(net.store.parameterCount) parameters; \(data.train.count) train and \(data.test.count) test images in \(s.dataDir)")
        log(
            "\(processes) process(es) x \(perRank) images = batch \(s.batchSize); \(perRank / s.bnGroup) BN group(s) of \(s.bnGroup) per process; lr \(s.targetLR) (\(s.lr == nil ? "base-lr \(s.baseLR) x \(s.batchSize)/128" : "--lr")), \(s.schedule.rawValue)\(s.warmupEpochs > 0 ? ", warm-up \(s.warmupEpochs) epochs from \(s.baseLR)" : ""); \(stepsPerEpoch) steps per epoch, \(s.epochs) epochs"
        )

        let reducer = GradientReducer(
            comm: comm, store: net.store, bucketFloats: GradientReducer.floats(mebibytes: s.bucketMB), precision: s.gradDtype)
        let pipeline = ImagePipeline(augment: s.augment, seed: s.seed)
        let imageFloats = 3 * 32 * 32
        var images = [Float](repeating: 0, count: perRank * imageFloats)
        var labels = [Int32](repeating: 0, count: perRank)
        let runStart = Profile.now()
        let firstStep = step
        var lastReport = runStart, lastCheckpoint = runStart
        var resumedSums: Checkpoint.EpochSums? = step % stepsPerEpoch == 0 ? nil : setup.sums
        var stopAfterEpoch = false
        /// A checkpoint of the state after `step` (rank 0 writes it; the others go on).
        func checkpoint(_ sums: Checkpoint.EpochSums) throws {
            lastCheckpoint = Profile.now()
            guard comm.isRoot else { return }
            try Checkpoint.save(
                net, step: step, settings: s, tunedPaths: tunedPaths, sums: step % stepsPerEpoch == 0 ? Checkpoint.EpochSums() : sums,
                into: s.outdir, keep: s.keepCheckpoints)
        }

        while step < lastStep {
            let epoch = step / stepsPerEpoch
            let permutation = order.permutation(epoch: epoch)
            let epochStart = Profile.now()
            let restored = resumedSums ?? Checkpoint.EpochSums()
            resumedSums = nil
            var lossSum = restored.loss, correct = restored.correct, steps = restored.steps
            var lr = schedule.rate(step: step)
            while step < lastStep && step / stepsPerEpoch == epoch {
                let batch = step % stepsPerEpoch
                lr = schedule.rate(step: step)
                let first = batch * s.batchSize + rank * perRank
                images.withUnsafeMutableBufferPointer { img in
                    for j in 0..<perRank {
                        let index = permutation[first + j]
                        pipeline.image(data.train, index: index, epoch: epoch, into: img.baseAddress! + j * imageFloats)
                        labels[j] = data.train.label(index)
                    }
                }
                let sgd = SGD(learningRate: lr, momentum: s.momentum, weightDecay: s.weightDecay, nesterov: s.nesterov)
                let (loss, right, stopping) = trainStep(net, images: images, labels: labels, n: perRank, optimizer: sgd, reducer: reducer)
                guard loss.isFinite else {
                    throw CollectiveError("loss is \(loss) at step \(step + 1) (epoch \(epoch + 1)): training diverged; lower --lr or check the data")
                }
                lossSum += loss; correct += right; steps += 1
                step += 1
                if let every = s.checkEvery, step % every == 0 { try checkReplicas(net, step: step) }
                let sums = Checkpoint.EpochSums(loss: lossSum, correct: correct, steps: steps)
                if stopping {
                    // at the end of an epoch (or of the run) the epoch's row and checkpoint come first
                    if step % stepsPerEpoch == 0 || step == lastStep {
                        stopAfterEpoch = true
                        break
                    }
                    try checkpoint(sums)
                    logStop(step: step)
                    comm.barrier()
                    return .stopped(step: step)
                }
                let stepDue = s.checkpointSteps.map { step % $0 == 0 } ?? false
                let timeDue = s.checkpointMinutes > 0 && Profile.now() - lastCheckpoint >= s.checkpointMinutes * 60
                if (stepDue || (timeDue && comm.isRoot)) && step % stepsPerEpoch != 0 && step < lastStep { try checkpoint(sums) }
                let now = Profile.now()
                if now - lastReport >= s.progressSeconds {
                    lastReport = now
                    let rate = Double((step - firstStep) * s.batchSize) / (now - runStart)
                    let eta = Double(lastStep - step) * Double(s.batchSize) / rate
                    log(
                        String(
                            format: "epoch %d/%d step %d/%d loss %.4f acc %.2f%% lr %.4g %.1f img/s ETA %@",
                            epoch + 1, s.epochs, step, lastStep, lossSum / Double(steps),
                            100 * correct / Double(steps * s.batchSize), lr, rate, formatDuration(eta)))
                }
            }
            if s.checkEvery == nil { try checkReplicas(net, step: step) }
            let seconds = Profile.now() - epochStart
            let (testLoss, testAccuracy) = evaluate(net, data.test, pipeline: pipeline)
            let row = EpochMetrics(
                epoch: epoch + 1, step: step, lr: lr, trainLoss: lossSum / Double(steps),
                trainAccuracy: correct / Double(steps * s.batchSize), testLoss: testLoss,
                testAccuracy: testAccuracy, seconds: seconds,
                imagesPerSecond: Double(steps * s.batchSize) / seconds)
            if comm.isRoot {
                log(
                    String(
                        format: "epoch %d done: step %d, train loss %.4f acc %.2f%%, test loss %.4f acc %.2f%%, %.1f s, %.1f img/s",
                        row.epoch, row.step, row.trainLoss, 100 * row.trainAccuracy, row.testLoss, 100 * row.testAccuracy,
                        row.seconds, row.imagesPerSecond))
                try metrics?.append(row)
                board?.scalars(
                    [
                        ("Train/Loss", row.trainLoss), ("Train/Accuracy", row.trainAccuracy),
                        ("Test/Loss", row.testLoss), ("Test/Accuracy", row.testAccuracy),
                        ("LR", row.lr), ("images/s", row.imagesPerSecond),
                    ], step: row.epoch)
                board?.flush()
            }
            try checkpoint(Checkpoint.EpochSums(loss: lossSum, correct: correct, steps: steps))
            comm.barrier()
            if stopAfterEpoch && step < lastStep {
                logStop(step: step)
                return .stopped(step: step)
            }
        }
        if comm.isRoot {
            try net.saveStateDict(to: s.outdir + "/model.safetensors")
            log("wrote \(s.outdir)/model.safetensors and \(s.outdir)/\(Checkpoint.fileName) at step \(step)")
        }
        comm.barrier()
        return .finished
    }

    func logStop(step: Int) {
        let signo = StopSignal.pending
        log(
            "stopped at step \(step) on \(signo != 0 ? StopSignal.name(signo) : "a signal to another rank"): checkpoint written to \(settings.outdir)/\(Checkpoint.name(step: step)); resume with --resume \(settings.outdir)"
        )
    }

    /// One data-parallel step; returns this step's global mean loss, global correct count, and
    /// whether any rank has been asked to stop (`StopSignal`), agreed in the same allreduce.
    func trainStep(
        _ net: ResNeXt<Float>, images: [Float], labels: [Int32], n: Int, optimizer: SGD,
        reducer: GradientReducer
    ) -> (Double, Double, Bool) {
        let result = images.withUnsafeBufferPointer { img in
            labels.withUnsafeBufferPointer { lab in
                DataParallel.step(
                    net, images: img.baseAddress!, labels: lab.baseAddress!, n: n, globalBatch: settings.batchSize,
                    bnGroup: settings.bnGroup, optimizer: optimizer, reducer: reducer)
            }
        }
        var sums = [result.loss, Double(result.correct), StopSignal.pending != 0 ? 1 : 0]
        comm.allreduceSum(&sums)
        return (sums[0], sums[1], sums[2] > 0)
    }

    /// Loss and accuracy over a split in evaluation mode; each image is evaluated once, on the
    /// rank whose contiguous share holds it; sums are combined across ranks.
    public func evaluate(_ net: ResNeXt<Float>, _ split: CIFAR10.Split, pipeline: ImagePipeline) -> (loss: Double, accuracy: Double) {
        let (total, right) = Trainer.evaluateShard(net, split, pipeline: pipeline, rank: comm.rank, size: comm.size)
        var sums = [total, right]
        comm.allreduceSum(&sums)
        return (sums[0] / Double(split.count), sums[1] / Double(split.count))
    }

    /// Sum of losses and of correct predictions over rank's share of the split.
    public static func evaluateShard(_ net: ResNeXt<Float>, _ split: CIFAR10.Split, pipeline: ImagePipeline, rank: Int, size: Int)
        -> (Double, Double)
    {
        let lo = rank * split.count / size, hi = (rank + 1) * split.count / size
        let chunk = net.maxBatch, imageFloats = 3 * 32 * 32
        var images = [Float](repeating: 0, count: chunk * imageFloats)
        var labels = [Int32](repeating: 0, count: chunk)
        var total = 0.0, right = 0.0
        var start = lo
        while start < hi {
            let n = min(chunk, hi - start)
            images.withUnsafeMutableBufferPointer { img in
                for j in 0..<n {
                    pipeline.image(split, index: start + j, epoch: nil, into: img.baseAddress! + j * imageFloats)
                    labels[j] = split.label(start + j)
                }
            }
            let (loss, correct) = images.withUnsafeBufferPointer { img in
                labels.withUnsafeBufferPointer { lab in
                    net.forward(img.baseAddress!, n: n, mode: .inference)
                    return net.loss(labels: lab.baseAddress!, n: n, divisor: 1)
                }
            }
            total += loss; right += Double(correct)
            start += n
        }
        return (total, right)
    }

    /// Rank 0's state to every rank (fresh, --init or --resume): parameters, momentum, BN
    /// statistics and counters.
    func broadcastState(_ net: ResNeXt<Float>) {
        guard comm.size > 1 else { return }
        let store = net.store
        Profile.measure(.communication) {
            for buffer in [store.params, store.momentum, store.stats] {
                comm.broadcast(UnsafeMutableRawPointer(buffer.base), bytes: buffer.count * 4, root: 0)
            }
            store.counters.withUnsafeMutableBytes { comm.broadcast($0.baseAddress!, bytes: $0.count, root: 0) }
        }
    }

    /// Replica check: every rank's checksum of weights and BN buffers must equal rank 0's.
    func checkReplicas(_ net: ResNeXt<Float>, step: Int) throws {
        guard comm.size > 1 else { return }
        let mine = net.replicaChecksum()
        var all = [Double](repeating: 0, count: comm.size)
        all[comm.rank] = mine
        comm.allreduceSum(&all)
        let differ = all.indices.filter { all[$0] != all[0] }
        if !differ.isEmpty {
            throw CollectiveError(
                "replica check failed at step \(step): rank(s) \(differ.map(String.init).joined(separator: ", ")) hold different weights or BN buffers than rank 0"
            )
        }
    }

    func writeConfig(net: ResNeXt<Float>, tunedPaths: Bool, trainImages: Int, testImages: Int, stepsPerEpoch: Int) throws {
        let s = settings
        let config = RunConfig(
            settings: s, effectiveLR: s.targetLR, processes: comm.size, perProcessBatch: s.batchSize / comm.size,
            bnGroupsPerProcess: s.batchSize / comm.size / s.bnGroup, stepsPerEpoch: stepsPerEpoch,
            parameters: net.store.parameterCount, trainImages: trainImages, testImages: testImages,
            model: "\(s.model)", version: resnextDDPVersion,
            convolutionPaths: tunedPaths ? net.convolutionPaths : nil)
        try writeAtomically(Array(try config.json().utf8) + [10], to: s.outdir + "/config.json")
    }
}

extension ResNeXt where T == Float {
    /// A checksum of the bits of the weights, BN statistics and counters: equal on every replica.
    public func replicaChecksum() -> Double {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for buffer in [store.params, store.stats] {
            for i in 0..<buffer.count {
                h = (h ^ UInt64(buffer.base[i].bitPattern)) &* 0x100_0000_01B3
            }
        }
        for c in store.counters { h = (h ^ UInt64(bitPattern: c)) &* 0x100_0000_01B3 }
        return Double(h >> 11)
    }
}
