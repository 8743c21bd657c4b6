package backupfmt

import "testing"

func BenchmarkDecodeMBFile(b *testing.B) {
	blob, err := EncodeMBFile(sampleFiles()[3])
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := DecodeMBFile(blob); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeMBFile(b *testing.B) {
	f := sampleFiles()[0]
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := EncodeMBFile(f); err != nil {
			b.Fatal(err)
		}
	}
}
