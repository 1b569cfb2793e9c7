import Foundation
import ResNeXt
import ResNeXtTrain
import Testing

@Suite struct DataTests {
    @Test func readsTrainingFilesInOrder() throws {
        let dir = try SyntheticCIFAR.folder(train: [("data_batch_3.bin", 5), ("data_batch_1.bin", 4)], test: 2)
        let data = try CIFAR10(directory: dir)
        #expect(data.train.files == ["data_batch_1.bin", "data_batch_3.bin"])
        #expect(data.train.count == 9 && data.test.count == 2)
        let first = SyntheticCIFAR.records(4, seed: 2)  // data_batch_1 was written second, seed 1 + 1
        #expect(Array(data.train.records.prefix(first.count)) == first)
    }

    @Test func normalisationMatchesTheFixtures() throws {
        let f = try Fixtures.file("model_11_2x4_b8_g8.safetensors")
        let raw = try f.bytes("raw")
        let split = CIFAR10.Split(records: raw, files: ["raw"])
        let pipeline = ImagePipeline(augment: true, seed: 1)
        var images = [Float](repeating: 0, count: split.count * 3072)
        images.withUnsafeMutableBufferPointer { buf in
            for i in 0..<split.count { pipeline.image(split, index: i, epoch: nil, into: buf.baseAddress! + i * 3072) }
        }
        #expect(images == (try f.floats("input")), "(byte/255 - mean) / std, bit for bit as the fixture's float32")
        #expect((0..<split.count).map { split.label($0) } == (try f.int64s("labels")).map { Int32($0) })
    }

    /// Crop and flip are a function of (seed, epoch, index) alone, and move pixels as
    /// RandomCrop(32, padding=4) then RandomHorizontalFlip do.
    @Test func augmentation() throws {
        let records = SyntheticCIFAR.records(3, seed: 3)
        let split = CIFAR10.Split(records: records, files: ["x"])
        let p = ImagePipeline(augment: true, seed: 42)
        #expect(p.augmentation(epoch: 2, index: 1) == ImagePipeline(augment: true, seed: 42).augmentation(epoch: 2, index: 1))
        var seen = Set<String>()
        var flips = 0
        for index in 0..<2000 {
            let a = p.augmentation(epoch: 0, index: index)
            #expect((0...8).contains(a.dy) && (0...8).contains(a.dx))
            seen.insert("\(a.dy),\(a.dx)")
            if a.flip { flips += 1 }
        }
        #expect(seen.count == 81, "every offset occurs")
        #expect(flips > 850 && flips < 1150, "flip with probability 1/2: \(flips) of 2000")
        // pixel check against the definition
        let plain = ImagePipeline(augment: false, seed: 42)
        var out = [Float](repeating: 0, count: 3072), ref = [Float](repeating: 0, count: 3072)
        plain.image(split, index: 1, epoch: 0, into: &ref)
        p.image(split, index: 1, epoch: 5, into: &out)
        let (dy, dx, flip) = p.augmentation(epoch: 5, index: 1)
        for c in 0..<3 {
            let black = Float((0 - CIFAR10.mean[c]) / CIFAR10.std[c])
            for y in 0..<32 {
                for x in 0..<32 {
                    let sx = (flip ? 31 - x : x) + dx - 4, sy = y + dy - 4
                    let expected = (0..<32).contains(sx) && (0..<32).contains(sy) ? ref[c * 1024 + sy * 32 + sx] : black
                    #expect(out[c * 1024 + y * 32 + x] == expected)
                }
            }
        }
    }

    @Test func epochOrder() {
        let order = EpochOrder(count: 103, batchSize: 10, shuffle: true, seed: 5)
        #expect(order.batchesPerEpoch == 10, "the last partial batch is dropped")
        let e0 = order.permutation(epoch: 0), e1 = order.permutation(epoch: 1)
        #expect(e0.sorted() == Array(0..<103) && e1.sorted() == Array(0..<103))
        #expect(e0 != e1)
        #expect(e0 == EpochOrder(count: 103, batchSize: 10, shuffle: true, seed: 5).permutation(epoch: 0))
        #expect(e0 != EpochOrder(count: 103, batchSize: 10, shuffle: true, seed: 6).permutation(epoch: 0))
        #expect(EpochOrder(count: 103, batchSize: 10, shuffle: false, seed: 5).permutation(epoch: 3) == Array(0..<103))
    }

    @Test func learningRateSchedules() {
        #expect(LearningRateSchedule.scaled(baseLR: 0.1, batchSize: 256) == 0.2)
        let multi = LearningRateSchedule(
            kind: .multistep, baseLR: 0.1, targetLR: 0.1, milestones: [150, 225], decay: 0.1,
            warmupEpochs: 0, epochs: 300, stepsPerEpoch: 10)
        #expect(multi.rate(step: 0) == 0.1)
        #expect(multi.rate(step: 1499) == 0.1)
        #expect(abs(multi.rate(step: 1500) - 0.01) < 1e-15)
        #expect(abs(multi.rate(step: 2250) - 0.001) < 1e-15)
        let cosine = LearningRateSchedule(
            kind: .cosine, baseLR: 0.1, targetLR: 0.2, milestones: [], decay: 0.1,
            warmupEpochs: 5, epochs: 105, stepsPerEpoch: 10)
        #expect(cosine.rate(step: 0) == 0.1, "warm-up starts at base-lr")
        #expect(abs(cosine.rate(step: 25) - 0.15) < 1e-15, "half way through warm-up")
        #expect(cosine.rate(step: 50) == 0.2, "then the target")
        #expect(abs(cosine.rate(step: 550) - 0.1) < 1e-12, "cosine half way")
        #expect(abs(cosine.rate(step: 1050)) < 1e-12, "decays to 0")
    }

    @Test func md5() {
        #expect(md5Hex([]) == "d41d8cd98f00b204e9800998ecf8427e")
        #expect(md5Hex(Array(String(repeating: "abc", count: 100).utf8)) == "f571117acbd8153c8dc3c81b8817773a")
    }
}
